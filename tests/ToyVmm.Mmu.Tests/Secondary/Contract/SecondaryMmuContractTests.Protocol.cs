using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using Xunit;

namespace ToyVmm.Mmu.Tests.Secondary.Contract;

/// <summary>The fault/invalidate protocol under forced interleavings: a seam pauses the fault between get_user_pages and the locked re-check while the test runs an invalidation.</summary>
public abstract unsafe partial class SecondaryMmuContractTests
{
    /// <summary>
    /// The schedule from the 2008 thread (docs/DESIGN.md "The 2008 interleaving"):
    /// <code>
    ///   fault                                   reclaim
    ///   get_user_pages(hva) -> frame F (+ref)
    ///                                           clear the PTE of hva
    ///                                           invalidate_page(hva)   (nothing mapped yet)
    ///   install spte -> F                        F freed when the fault drops its ref
    /// </code>
    /// Broken-2008 installs a mapping the host no longer has and the checker
    /// says so; the sequence protocol retries and installs the page's new frame.
    /// </summary>
    [Theory]
    [InlineData(HostKind.Real, NotifierProtocol.Broken2008, true)]
    [InlineData(HostKind.Real, NotifierProtocol.Sequence, false)]
    [InlineData(HostKind.Real, NotifierProtocol.Pin, false)]   // the host's unmap here is a DONTNEED, which pin passes on
    [InlineData(HostKind.Small, NotifierProtocol.Broken2008, true)]
    [InlineData(HostKind.Small, NotifierProtocol.Sequence, false)]
    public void FaultRacingReclaim_ThreadSchedule_CheckerCatchesOnlyTheBrokenProtocol(HostKind host, NotifierProtocol protocol, bool expectViolation)
    {
        Make(host, protocol);
        expectViolation &= Broken2008Races;
        var gpa = new Gpa(0x7000);
        int calls = 0;
        SetAfterGetUserPage(_mmu, (_, _) =>
        {
            if (Interlocked.Increment(ref calls) != 1) return;
            // The reclaimer runs to completion between get_user_pages and the install.
            var reclaim = new Thread(() => Evict(gpa));
            reclaim.Start();
            Assert.True(reclaim.Join(Patience));
        });
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, gpa, AccessKind.Write, out _));
        output.WriteLine(_checker.FirstViolation?.ToString() ?? "no violation");
        Assert.Equal(expectViolation, _checker.ViolationCount > 0);
        if (expectViolation)
            Assert.Contains("no longer maps", _checker.FirstViolation!.Rule);
        else
        {
            Assert.True(calls >= 2, "the fault dropped its first page and retried");
            Assert.True(Maps(gpa, out var frame));
            Assert.True(_binding.FrameBacks(frame, _ram.Add(gpa.Value)));
        }
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Fault_WhileInvalidationInProgressOverItsPage_WaitsForTheEndThenInstallsTheNewFrame(HostKind host)
    {
        Make(host);
        var gpa = new Gpa(0x9000);
        var hva = _ram.Add(gpa.Value);
        var range = new InvalidateRange(hva, hva.Add(4096), InvalidateEvent.Clear, true);
        int hookCalls = 0;
        var startDone = new ManualResetEventSlim();
        var letEnd = new ManualResetEventSlim();
        Thread? invalidator = null;
        SetAfterGetUserPage(_mmu, (_, _) =>
        {
            if (Interlocked.Increment(ref hookCalls) != 1) return;
            invalidator = new Thread(() =>
            {
                _binding.Notifiers.InvalidateRangeStart(range);
                startDone.Set();
                letEnd.Wait(Patience);
                _binding.Notifiers.InvalidateRangeEnd(range);
            });
            invalidator.Start();
            Assert.True(startDone.Wait(Patience));
        });
        var fault = new Thread(() => _mmu.Translate(_vcpu, gpa, AccessKind.Read, out _));
        fault.Start();
        Assert.True(startDone.Wait(Patience));
        // In progress over our page: the fault must not complete yet.
        Assert.False(fault.Join(TimeSpan.FromMilliseconds(100)));
        Assert.False(Maps(gpa, out _));
        letEnd.Set();
        Assert.True(fault.Join(Patience));
        Assert.True(invalidator!.Join(Patience));
        Assert.True(hookCalls >= 2, "the fault dropped its first page and retried");
        Assert.True(Maps(gpa, out _));
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void OverlappingInvalidations_FaultRetriesUntilBothEnd(HostKind host)
    {
        Make(host);
        var a = new InvalidateRange(_ram, _ram.Add(8 * 4096), InvalidateEvent.Clear, true);
        var b = new InvalidateRange(_ram.Add(4 * 4096), _ram.Add(16 * 4096), InvalidateEvent.Unmap, true);
        _binding.Notifiers.InvalidateRangeStart(a);
        _binding.Notifiers.InvalidateRangeStart(b);
        var fault = new Thread(() => _mmu.Translate(_vcpu, new Gpa(10 * 4096), AccessKind.Read, out _));
        fault.Start();
        _binding.Notifiers.InvalidateRangeEnd(a);
        // b still covers page 10.
        Assert.False(fault.Join(TimeSpan.FromMilliseconds(100)));
        _binding.Notifiers.InvalidateRangeEnd(b);
        Assert.True(fault.Join(Patience));
        Assert.True(Maps(Gpa.FromPageNumber(10), out _));
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Aging_DuringAFault_ReportsAndClearsOnlyInstalledAccessBits(HostKind host)
    {
        Make(host);
        Touch(1, AccessKind.Read);
        bool youngDuringFault = true;
        SetAfterGetUserPage(_mmu, (g, _) =>
        {
            if (g.PageNumber != 3) return;
            var ager = new Thread(() => youngDuringFault = _binding.Notifiers.ClearYoung(HvaOf(3), HvaOf(4)));
            ager.Start();
            Assert.True(ager.Join(Patience));
        });
        Touch(3, AccessKind.Read);
        Assert.False(youngDuringFault);       // nothing installed for page 3 while the fault was in flight
        Assert.True(_binding.Notifiers.TestYoung(HvaOf(3)));
        Assert.True(_binding.Notifiers.ClearYoung(_ram, _ram.Add(Ram)));
        Assert.False(_binding.Notifiers.TestYoung(HvaOf(1)));
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void ConcurrentFaultsAndPageOuts_BoundedStorm_NoViolationAndContentsKept(HostKind host)
    {
        const int seed = 1234;
        output.WriteLine($"seed {seed}");
        Make(host, frames: 64);
        var stop = DateTime.UtcNow.AddSeconds(2);
        var pager = new Thread(() =>
        {
            var rng = new Random(seed + 1);
            for (int i = 0; i < 20_000 && DateTime.UtcNow < stop; i++)
                _manager.PageOut(new Gpa((ulong)rng.Next(0, 16) * 4096), 4096 * (ulong)rng.Next(1, 4));
        });
        pager.Start();
        var rng = new Random(seed);
        var oracle = new byte[16];
        for (int i = 0; i < 50_000 && DateTime.UtcNow < stop; i++)
        {
            int page = rng.Next(0, 16);
            bool write = rng.Next(2) == 0;
            // One access done under guest mode with requests honoured, as a vCPU would.
            _vcpu.EnterGuest();
            _vcpu.TakeRequests(); _vcpu.AcknowledgeFlush();
            Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, new Gpa((ulong)page * 4096), write ? AccessKind.Write : AccessKind.Read, out byte* p));
            if (_vcpu.HasRequests) { _vcpu.ExitGuest(); continue; }   // flushed meanwhile: retry later
            if (write) p[page] = oracle[page] = (byte)rng.Next(1, 256);
            else Assert.Equal(oracle[page], p[page]);
            _vcpu.ExitGuest();
        }
        Assert.True(pager.Join(Patience));
        AssertNoViolation();
    }
}
