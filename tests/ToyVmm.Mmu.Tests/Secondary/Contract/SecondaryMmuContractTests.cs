using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using Xunit;
using Xunit.Abstractions;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Secondary.Contract;

/// <summary>
/// What every secondary MMU owes the rest of ToyVmm (docs/DESIGN.md "Where a
/// shadow MMU fits"), run over the real simulated host: translation, the host's
/// fault kinds, every invalidation event, aging, slot changes, the 2008
/// interleaving under both protocols, shootdown and the checker. A secondary
/// MMU plugs in by subclassing this with its factory and two seams. The
/// tests marked with a <see cref="HostKind"/> also run over the small
/// <see cref="TestHost"/>, which evicts pages its own way.
/// </summary>
public abstract unsafe class SecondaryMmuContractTests(ITestOutputHelper output) : IDisposable
{
    protected const int RamPages = 64;
    private const ulong Ram = RamPages * Page.Size;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    /// <summary>Which host the MMU runs over: the simulated kernel, or the small test host.</summary>
    public enum HostKind { Real, Small }

    public static TheoryData<HostKind> BothHosts => new() { HostKind.Real, HostKind.Small };

    /// <summary>What a secondary entry maps a guest page to.</summary>
    protected readonly record struct MappedPage(Hfn Frame, bool Dirty);

    private HostMemory _host = null!;          // the real host only
    private HostAddressSpace _mm = null!;      // the real host only
    private TestHost? _small;
    private IHostMemory _binding = null!;
    private Hva _ram;
    private ISecondaryMmu _mmu = null!;
    private GuestMemoryManager _manager = null!;
    private MmuInvariantChecker _checker = null!;
    private MeasurementHub _hub = null!;
    private readonly VcpuLink _vcpu = new(0);

    /// <summary>
    /// The MMU under test over <paramref name="host"/>, with one slot: guest-physical
    /// [0, <paramref name="ramBytes"/>) at <paramref name="ramBase"/>, reporting to
    /// <paramref name="checker"/> and <paramref name="events"/>, registered on the host's notifiers.
    /// </summary>
    protected abstract ISecondaryMmu CreateMmu(IHostMemory host, ulong ramBytes, Hva ramBase, IMmuInvariantChecker checker, IMmuEventSink events);

    /// <summary>Seam: run <paramref name="hook"/> on the faulting thread between get_user_pages and the locked re-check.</summary>
    protected abstract void SetAfterGetUserPage(ISecondaryMmu mmu, Action<Gpa, Hfn>? hook);

    /// <summary>What a secondary entry of the MMU now maps the guest page of <paramref name="gpa"/> to, or null.</summary>
    protected abstract MappedPage? Lookup(ISecondaryMmu mmu, Gpa gpa);

    private bool Maps(Gpa gpa, out Hfn frame)
    {
        var m = Lookup(_mmu, gpa);
        frame = m?.Frame ?? default;
        return m is not null;
    }

    private void Make(HostKind kind = HostKind.Real, NotifierProtocol protocol = NotifierProtocol.Sequence, int frames = 256)
    {
        _checker = new MmuInvariantChecker();
        _checker.WatchVcpus(() => [_vcpu]);
        _hub = new MeasurementHub(vcpus: 1);
        IHostMadvise madvise;
        if (kind == HostKind.Small)
        {
            _small = new TestHost(frames, protocol == NotifierProtocol.Broken2008) { FrameFreed = _checker.OnFrameFree };
            (_binding, madvise, _ram) = (_small, _small, TestHost.RamBase);
        }
        else
        {
            _host = NewHost(frames);
            _mm = _host.CreateAddressSpace();
            _mm.Notifiers.Protocol = NotifierProtocols.Of(protocol);   // chosen before the MMU subscribes
            _ram = _mm.Map(Ram, HostProtection.ReadWrite);
            _host.FrameFreed = _checker.OnFrameFree;
            var binding = new SecondaryHostBinding(_mm);
            (_binding, madvise) = (binding, binding);
        }
        _mmu = CreateMmu(_binding, Ram, _ram, _checker, _hub);
        Assert.Equal(protocol, _binding.Notifiers.Protocol.Kind);   // the MMU follows its host's protocol
        _manager = new GuestMemoryManager(madvise, _mmu);
        _mmu.AttachVcpu(_vcpu);
    }

    /// <summary>Clear the PTEs of a guest page whatever references are held (reclaim's unmap), through the host's notifier order.</summary>
    private void Evict(Gpa gpa)
    {
        if (_small is not null) _small.Evict(_ram.Add(gpa.PageBase.Value), Page.Size, keep: true);
        else _mm.DontNeed(_ram.Add(gpa.PageBase.Value), Page.Size);   // MADV_DONTNEED clears PTEs whatever references are held, as try_to_unmap does
    }

    /// <summary>Host-virtual memory for a second slot.</summary>
    private Hva MapMore(ulong bytes) => _small is not null ? TestHost.RamBase.Add(1UL << 30) : _mm.Map(bytes, HostProtection.ReadWrite);

    public void Dispose()
    {
        (_mmu as IDisposable)?.Dispose();
        _mm?.Dispose();
        _host?.Dispose();
        _small?.Dispose();
        _hub?.Dispose();
        GC.SuppressFinalize(this);
    }

    private byte* Touch(int page, AccessKind kind = AccessKind.Write)
    {
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, Gpa.FromPageNumber((ulong)page), kind, out byte* p));
        return p;
    }

    private Hva HvaOf(int page) => _ram.Add((ulong)page * Page.Size);

    private void AssertNoViolation()
    {
        output.WriteLine(_checker.FirstViolation?.ToString() ?? $"no violation in {_checker.Checks} checks");
        Assert.Equal(0, _checker.ViolationCount);
    }

    [Theory]
    [InlineData(AccessKind.Read)]
    [InlineData(AccessKind.Write)]
    [InlineData(AccessKind.Fetch)]
    public void Translate_EachAccessKind_MapsThePageTheHostBacks(AccessKind kind)
    {
        Make();
        byte* p = Touch(5, kind);
        Assert.True(Maps(Gpa.FromPageNumber(5), out var frame));
        Assert.True(_mm.FrameBacks(frame, HvaOf(5)));
        Assert.True(p == _binding.FrameAddress(frame));
        AssertNoViolation();
    }

    [Fact]
    public void Translate_WriteThenHostRead_SeesTheGuestWrite()
    {
        Make();
        Touch(7)[9] = 0x6B;
        var buf = new byte[Page.Size];
        _mm.Read(HvaOf(7), buf);
        Assert.Equal(0x6B, buf[9]);
    }

    [Fact]
    public void Translate_ReadOnlySlot_ReadsButRefusesWrites()
    {
        Make();
        var hva = _mm.Map(4 * Page.Size, HostProtection.ReadWrite);
        var start = new Gpa(1UL << 30);
        _mmu.AddSlot(new MemorySlot(1, start, 4 * Page.Size, hva, ReadOnly: true));
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, start, AccessKind.Read, out _));
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, start, AccessKind.Fetch, out _));
        Assert.Equal(TranslateStatus.Protection, _mmu.Translate(_vcpu, start, AccessKind.Write, out _));
        AssertNoViolation();
    }

    [Fact]
    public void Fault_EachHostAnswer_KeepsContentsAndIsClassifiedByKind()
    {
        Make();
        long Faults(FaultKind k) => _hub.Snapshot().Total.Faults[k].TotalCount;
        Touch(0)[1] = 0x11;
        Assert.Equal(1, Faults(FaultKind.ZeroFill));

        // Zap the secondary entry only: the host page stays, the next fault finds it present.
        var r = new InvalidateRange(HvaOf(0), HvaOf(1), InvalidateEvent.Clear, MayBlock: true);
        _mm.Notifiers.InvalidateRangeStart(r);
        _mm.Notifiers.InvalidateRangeEnd(r);
        Assert.False(Maps(Gpa.FromPageNumber(0), out _));
        Assert.Equal(0x11, Touch(0, AccessKind.Read)[1]);
        Assert.Equal(1, Faults(FaultKind.Present));

        Assert.Equal(1, _manager.PageOut(Gpa.FromPageNumber(0), Page.Size));
        Assert.Equal(0x11, Touch(0, AccessKind.Read)[1]);
        Assert.Equal(1, Faults(FaultKind.SwapIn));

        // A page-out whose swap write fails leaves the page unmapped in the swap cache.
        Touch(1)[2] = 0x22;
        _host.Swap.FaultInjector = new FailingWrites();
        Assert.Equal(0, _manager.PageOut(Gpa.FromPageNumber(1), Page.Size));
        _host.Swap.FaultInjector = null;
        Assert.Equal(0x22, Touch(1, AccessKind.Read)[2]);
        Assert.Equal(1, Faults(FaultKind.SwapCacheHit));
        AssertNoViolation();
    }

    private sealed class FailingWrites : ISwapFaultInjector
    {
        public Exception? BeforeWrite(uint firstSlot, int slots) => new IOException("injected");
        public Exception? BeforeRead(uint slot) => null;
    }

    public enum HostEvent { Reclaim, PageOut, Discard, Unmap, Protect, Teardown }

    /// <summary>
    /// Every host operation that changes PTEs zaps the secondary entries first and
    /// asks the vCPU holding the page to flush before any frame of it is freed.
    /// </summary>
    [Theory]
    [InlineData(HostEvent.Reclaim)]
    [InlineData(HostEvent.PageOut)]
    [InlineData(HostEvent.Discard)]
    [InlineData(HostEvent.Unmap)]
    [InlineData(HostEvent.Protect)]
    [InlineData(HostEvent.Teardown)]
    public void Invalidation_EachHostEvent_ZapsTheEntryAndAsksTheHolderToFlushBeforeTheFree(HostEvent ev)
    {
        Make();
        for (int i = 0; i < 8; i++) Touch(i);
        Assert.True(Maps(Gpa.FromPageNumber(3), out _));
        int freed = 0, freedBeforeFlushRequest = 0;
        _host.FrameFreed = f =>
        {
            freed++;
            if (!_vcpu.HasRequests) freedBeforeFlushRequest++;
            _checker.OnFrameFree(f);
        };
        switch (ev)
        {
            case HostEvent.Reclaim: Assert.True(_host.ReclaimNow(RamPages, ignoreAccessed: true) > 0); break;
            case HostEvent.PageOut: Assert.Equal(8, _manager.PageOut(new Gpa(0), 8 * Page.Size)); break;
            case HostEvent.Discard: Assert.Equal(8, _manager.Discard(new Gpa(0), 8 * Page.Size)); break;
            case HostEvent.Unmap: _mm.Unmap(_ram, 8 * Page.Size); break;
            case HostEvent.Protect: _mm.Protect(_ram, 8 * Page.Size, HostProtection.Read); break;
            case HostEvent.Teardown: _mm.Dispose(); break;
        }
        Assert.False(Maps(Gpa.FromPageNumber(3), out _));
        Assert.True(_vcpu.HasRequests, "the holder of the zapped pages is asked to flush");
        if (ev is HostEvent.Protect) Assert.Equal(0, freed);   // protect frees nothing
        else Assert.True(freed > 0);
        Assert.Equal(0, freedBeforeFlushRequest);
        AssertNoViolation();
    }

    [Fact]
    public void Aging_ThroughTheNotifiers_ReportsClearsAndSetsAgainOnAccess()
    {
        Make();
        Touch(2, AccessKind.Read);
        Assert.True(_mm.Notifiers.TestYoung(HvaOf(2)));
        Assert.False(_mm.Notifiers.TestYoung(HvaOf(4)));        // never touched: no entry, not young
        Assert.True(_mm.Notifiers.ClearYoung(_ram, _ram.Add(Ram)));
        Assert.False(_mm.Notifiers.TestYoung(HvaOf(2)));
        Assert.False(_mm.Notifiers.ClearFlushYoung(_ram, _ram.Add(Ram)));
        Assert.True(Maps(Gpa.FromPageNumber(2), out _));   // aging does not zap
        Touch(2, AccessKind.Read);
        Assert.True(_mm.Notifiers.TestYoung(HvaOf(2)));
        Assert.True(_mm.Notifiers.ClearFlushYoung(HvaOf(2), HvaOf(3)));
        Assert.False(_mm.Notifiers.TestYoung(HvaOf(2)));
        AssertNoViolation();
    }

    [Fact]
    public void Slots_AddedAndRemovedWhileInUse_MapThenZapAndFlush()
    {
        Make();
        Touch(1);
        var hva = _mm.Map(4 * Page.Size, HostProtection.ReadWrite);
        var start = new Gpa(1UL << 30);
        _mmu.AddSlot(new MemorySlot(1, start, 4 * Page.Size, hva));
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, start.Add(Page.Size), AccessKind.Write, out byte* p));
        p[3] = 0x33;
        var buf = new byte[Page.Size];
        _mm.Read(hva.Add(Page.Size), buf);
        Assert.Equal(0x33, buf[3]);
        Assert.False(_vcpu.HasRequests);
        Assert.True(_mmu.RemoveSlot(1));
        Assert.True(_vcpu.HasRequests, "removing a slot flushes the vCPUs that held its pages");
        Assert.False(Maps(start.Add(Page.Size), out _));
        Assert.Equal(TranslateStatus.Unbacked, _mmu.Translate(_vcpu, start.Add(Page.Size), AccessKind.Read, out _));
        Assert.False(_mmu.RemoveSlot(1));
        Assert.True(Maps(Gpa.FromPageNumber(1), out _));   // the other slot is untouched
        AssertNoViolation();
    }

    [Fact]
    public void RemoveSlot_VcpuInGuestModeHoldingItsPage_WaitsForItsFlushAcknowledgement()
    {
        Make();
        var start = new Gpa(1UL << 30);
        _mmu.AddSlot(new MemorySlot(1, start, 4 * Page.Size, MapMore(4 * Page.Size)));
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, start, AccessKind.Write, out _));
        _vcpu.EnterGuest();
        var remove = new Thread(() => _mmu.RemoveSlot(1));
        remove.Start();
        Assert.False(remove.Join(TimeSpan.FromMilliseconds(100)));   // the vCPU may still use the page
        Assert.Equal(VcpuLink.FlushRequest, _vcpu.TakeRequests());
        _vcpu.AcknowledgeFlush();
        Assert.True(remove.Join(Patience));
        _vcpu.ExitGuest();
        Assert.Null(_mmu.Slots.Find(start));
        AssertNoViolation();
    }

    [Fact]
    public void Checker_FrameFreedWhileAnEntryMapsIt_IsReported()
    {
        Make();
        MmuViolation? seen = null;
        _checker.Violated += v => seen = v;
        Touch(9);
        Assert.True(Maps(Gpa.FromPageNumber(9), out var frame));
        _checker.OnFrameFree(frame);    // as a host that skipped the invalidation would
        Assert.Equal(1, _checker.ViolationCount);
        Assert.Equal("a host frame was freed while a secondary entry still maps it", seen!.Rule);
        Assert.Equal(Gpa.FromPageNumber(9), seen.Gpa);
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Translate_FirstTouchThenAgain_FaultsOnceAndReturnsTheSamePage(HostKind host)
    {
        Make(host);
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, new Gpa(0x3123), AccessKind.Write, out byte* p1));
        Assert.True(Maps(new Gpa(0x3000), out var frame));
        int faults = 0;
        SetAfterGetUserPage(_mmu, (_, _) => faults++);
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, new Gpa(0x3000), AccessKind.Read, out byte* p2));
        Assert.True(p1 == p2);
        Assert.Equal(0, faults);
        Assert.True(Maps(new Gpa(0x3000), out var again) && again == frame);
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Translate_OutsideRam_IsUnbacked(HostKind host)
    {
        Make(host);
        Assert.Equal(TranslateStatus.Unbacked, _mmu.Translate(_vcpu, new Gpa(Ram), AccessKind.Read, out _));
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void PageOut_ThenRead_KeepsContents_AndDiscardReadsZero(HostKind host)
    {
        Make(host);
        byte* p = Touch(5);
        p[7] = 0x5A;
        Assert.Equal(1, _manager.PageOut(new Gpa(0x5000), 4096));
        Assert.False(Maps(new Gpa(0x5000), out _));
        Assert.Equal(0x5A, Touch(5, AccessKind.Read)[7]);
        Assert.Equal(1, _manager.Discard(new Gpa(0x5000), 4096));
        Assert.Equal(0, Touch(5, AccessKind.Read)[7]);
        Assert.Equal(GuestRange.Invalid, _manager.PageOut(new Gpa(0x5001), 4096));
        Assert.Equal(GuestRange.Invalid, _manager.Discard(new Gpa(Ram - 4096), 8192));
        AssertNoViolation();
    }

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
    [InlineData(HostKind.Small, NotifierProtocol.Broken2008, true)]
    [InlineData(HostKind.Small, NotifierProtocol.Sequence, false)]
    public void FaultRacingReclaim_ThreadSchedule_CheckerCatchesOnlyTheBrokenProtocol(HostKind host, NotifierProtocol protocol, bool expectViolation)
    {
        Make(host, protocol);
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
    public void Zap_OfEntryWrittenThroughTheSecondaryMmu_HandsTheDirtyBitToTheHost(HostKind host)
    {
        Make(host);
        Touch(2, AccessKind.Read);
        Assert.False(Lookup(_mmu, new Gpa(0x2000))!.Value.Dirty);
        byte* p = Touch(2, AccessKind.Write);
        Assert.True(Lookup(_mmu, new Gpa(0x2000))!.Value.Dirty);
        p[0] = 1;
        _manager.PageOut(new Gpa(0x2000), 4096);
        Assert.Equal(1, Touch(2, AccessKind.Read)[0]);
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Invalidation_WithVcpuInGuestMode_WaitsForItsFlushAcknowledgement(HostKind host)
    {
        Make(host);
        Touch(4);
        _vcpu.EnterGuest();
        var pageOut = new Thread(() => _manager.PageOut(new Gpa(0x4000), 4096));
        pageOut.Start();
        // The vCPU is "running guest code" and has not looked at its requests.
        Assert.False(pageOut.Join(TimeSpan.FromMilliseconds(100)));
        Assert.True(_vcpu.HasRequests);
        Assert.Equal(VcpuLink.FlushRequest, _vcpu.TakeRequests());
        _vcpu.AcknowledgeFlush();
        Assert.True(pageOut.Join(Patience));
        _vcpu.ExitGuest();
        Assert.False(Maps(new Gpa(0x4000), out _));
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Invalidation_AsksOnlyTheVcpusThatMayHoldThePage(HostKind host)
    {
        Make(host);
        var other = new VcpuLink(1);
        _mmu.AttachVcpu(other);
        _checker.WatchVcpus(() => [_vcpu, other]);
        Touch(4);
        other.EnterGuest();     // running guest code, never acknowledging
        Assert.Equal(1, _manager.PageOut(new Gpa(0x4000), 4096));
        Assert.False(other.HasRequests, "vCPU 1 never cached the page and is not asked to flush");
        Assert.True(_vcpu.HasRequests);
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(other, new Gpa(0x4000), AccessKind.Read, out _));
        var pageOut = new Thread(() => _manager.PageOut(new Gpa(0x4000), 4096));
        pageOut.Start();
        Assert.False(pageOut.Join(TimeSpan.FromMilliseconds(100)));   // now it holds it: the zap waits for it
        other.TakeRequests(); other.AcknowledgeFlush();
        Assert.True(pageOut.Join(Patience));
        other.ExitGuest();
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

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void AddSlot_WhileInvalidationInFlight_WaitsForItsEnd(HostKind host)
    {
        Make(host);
        var hva = MapMore(Page.Size);
        var range = new InvalidateRange(_ram, _ram.Add(4096), InvalidateEvent.Clear, true);
        _binding.Notifiers.InvalidateRangeStart(range);
        var add = new Thread(() => _mmu.AddSlot(new MemorySlot(1, new Gpa(1UL << 30), 4096, hva)));
        add.Start();
        Assert.False(add.Join(TimeSpan.FromMilliseconds(100)));
        Assert.Null(_mmu.Slots.Find(new Gpa(1UL << 30)));
        _binding.Notifiers.InvalidateRangeEnd(range);
        Assert.True(add.Join(Patience));
        Assert.NotNull(_mmu.Slots.Find(new Gpa(1UL << 30)));
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void RemoveSlot_ZapsItsEntries_AndLaterAccessIsUnbacked(HostKind host)
    {
        Make(host);
        var start = new Gpa(1UL << 30);
        _mmu.AddSlot(new MemorySlot(1, start, 4 * Page.Size, MapMore(4 * Page.Size)));
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, start.Add(Page.Size), AccessKind.Write, out _));
        Assert.True(Maps(start.Add(Page.Size), out _));
        Assert.True(_mmu.RemoveSlot(1));
        Assert.False(Maps(start.Add(Page.Size), out _));
        Assert.Equal(TranslateStatus.Unbacked, _mmu.Translate(_vcpu, start.Add(Page.Size), AccessKind.Read, out _));
        Assert.False(_mmu.RemoveSlot(1));
        AssertNoViolation();
    }

    /// <summary>The vCPU with a scripted TLB, holding guest page 4 and in guest mode.</summary>
    private ScriptedTlb RunningVcpuHoldingPage4(HostKind host)
    {
        Make(host);
        var tlb = new ScriptedTlb();
        _vcpu.AttachTlb(tlb);
        Touch(4);
        _vcpu.EnterGuest();
        return tlb;
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Invalidation_VcpuWhoseTlbCannotHoldThePage_IsDoneWithoutIt(HostKind host)
    {
        var tlb = RunningVcpuHoldingPage4(host);   // running guest code, never acknowledging
        tlb.Holds = false;
        Assert.Equal(1, _manager.PageOut(new Gpa(0x4000), 4096));
        Assert.Empty(tlb.ShotDown);
        Assert.Equal(_vcpu.PostedGeneration, _vcpu.RemoteGeneration);
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Invalidation_QuiescentVcpu_IsShotDownFromOutside(HostKind host)
    {
        var tlb = RunningVcpuHoldingPage4(host);
        tlb.Quiescent = true;
        Assert.Equal(1, _manager.PageOut(new Gpa(0x4000), 4096));
        Assert.Equal([(4UL, 4UL)], tlb.ShotDown);
        Assert.Equal(0, _vcpu.FlushedGeneration);
        Assert.Equal(_vcpu.PostedGeneration, _vcpu.RemoteGeneration);
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Invalidation_VcpuInsideAnAccess_WaitsForItsAcknowledgement(HostKind host)
    {
        var tlb = RunningVcpuHoldingPage4(host);
        var pageOut = new Thread(() => _manager.PageOut(new Gpa(0x4000), 4096));
        pageOut.Start();
        Assert.False(pageOut.Join(TimeSpan.FromMilliseconds(100)));
        lock (tlb.ShotDown) Assert.Single(tlb.ShotDown);   // shot down, but it may still hold a pointer
        _vcpu.TakeRequests();
        _vcpu.TakeFlushRanges(new (ulong, ulong)[VcpuLink.MaxPendingRanges]);
        _vcpu.AcknowledgeFlush();
        Assert.True(pageOut.Join(Patience));
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Checker_TlbThatStillMapsAFreedFrame_IsAViolation(HostKind host)
    {
        var tlb = RunningVcpuHoldingPage4(host);
        tlb.Quiescent = true;    // the protocol believes the shootdown...
        tlb.MapsAnswer = true;   // ...but the entry is still there
        _manager.PageOut(new Gpa(0x4000), 4096);
        Assert.Equal(1, _checker.ViolationCount);
        Assert.Contains("TLB still maps it", _checker.FirstViolation!.Rule);
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Checker_FrameFreedBeforeAVcpuFlushed_IsAViolation(HostKind host)
    {
        RunningVcpuHoldingPage4(host);
        // The host frees a frame that is still mapped for a vCPU that never flushed.
        Assert.True(Maps(new Gpa(0x4000), out var frame));
        _checker.OnZap(_binding, new ZappedEntry(new Gpa(0x4000), frame, EptEntry.VcpuBit(_vcpu.Index)));
        _vcpu.RequestFlush(4, 4);
        _checker.OnFrameFree(frame);
        Assert.Equal("a host frame was freed before vCPU 0 flushed its TLB", _checker.FirstViolation!.Rule);
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void DetachVcpu_IsNoLongerAskedToFlush(HostKind host)
    {
        Make(host);
        var writer = new VcpuLink(-1);   // untracked, like the VMM's guest-physical writer: asked on every zap
        _mmu.AttachVcpu(writer);
        Touch(4);
        _manager.PageOut(new Gpa(0x4000), 4096);
        Assert.True(writer.HasRequests);
        writer.TakeRequests();
        _mmu.DetachVcpu(writer);
        Touch(4);
        _manager.PageOut(new Gpa(0x4000), 4096);
        Assert.False(writer.HasRequests);
        AssertNoViolation();
    }
}
