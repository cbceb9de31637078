using Xunit;
using Xunit.Abstractions;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Tests.Secondary;

/// <summary>
/// The fault/invalidate protocol under forced interleavings: a hook pauses the
/// fault between get_user_pages and the locked re-check while the test runs an
/// invalidation on another thread. A contract suite: it runs against the small
/// <see cref="TestHost"/> and against the real simulated host.
/// </summary>
public abstract unsafe class EptMmuProtocolContract(ITestOutputHelper output)
{
    protected const ulong Ram = 64 * 4096;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    /// <summary>A host for the suite: its binding, where RAM is mapped, and a PTE-clearing eviction.</summary>
    protected interface IProtocolHost : IDisposable
    {
        IHostMemory Memory { get; }
        IHostMadvise Madvise { get; }
        Hva RamBase { get; }
        /// <summary>Clear the PTEs of [start, start+bytes) whatever references are held (reclaim's unmap), through the host's notifier order.</summary>
        void Evict(Hva start, ulong bytes);
        bool FrameBacks(Hfn frame, Hva address) => Memory.FrameBacks(frame, address);
    }

    protected abstract IProtocolHost CreateHost(int frames, bool broken2008, MmuInvariantChecker checker);

    /// <summary>The VMM's side of the MMU made by <see cref="Make"/>: PAGEOUT/DISCARD straight to the host.</summary>
    private GuestMemoryManager _manager = null!;

    private (IProtocolHost host, EptMmu mmu, MmuInvariantChecker checker, VcpuLink vcpu) Make(NotifierProtocol protocol = NotifierProtocol.Sequence, int frames = 256)
    {
        var checker = new MmuInvariantChecker();
        var host = CreateHost(frames, protocol == NotifierProtocol.Broken2008, checker);
        var mmu = new EptMmu(host.Memory, Ram, host.RamBase) { Checker = checker };
        Assert.Equal(protocol, mmu.Protocol);   // the MMU follows its host's protocol
        var vcpu = new VcpuLink(0);
        mmu.AttachVcpu(vcpu);
        _manager = new GuestMemoryManager(host.Madvise, mmu);
        return (host, mmu, checker, vcpu);
    }

    [Fact]
    public void Translate_FirstTouchThenAgain_FaultsOnceAndReturnsTheSamePage()
    {
        var (host, mmu, checker, vcpu) = Make();
        Assert.Equal(TranslateStatus.Ok, mmu.Translate(vcpu, new Gpa(0x3123), AccessKind.Write, out byte* p1));
        Assert.Equal(TranslateStatus.Ok, mmu.Translate(vcpu, new Gpa(0x3000), AccessKind.Read, out byte* p2));
        Assert.True(p1 == p2);
        Assert.Equal(1, mmu.Table.PresentCount);
        Assert.Equal(0, checker.ViolationCount);
        host.Dispose();
    }

    [Fact]
    public void Translate_OutsideRam_IsUnbacked()
    {
        var (host, mmu, _, vcpu) = Make();
        Assert.Equal(TranslateStatus.Unbacked, mmu.Translate(vcpu, new Gpa(Ram), AccessKind.Read, out _));
        host.Dispose();
    }

    [Fact]
    public void PageOut_ThenRead_KeepsContents_AndDiscardReadsZero()
    {
        var (host, mmu, checker, vcpu) = Make();
        mmu.Translate(vcpu, new Gpa(0x5000), AccessKind.Write, out byte* p);
        p[7] = 0x5A;
        Assert.Equal(1, _manager.PageOut(new Gpa(0x5000), 4096));
        Assert.Equal(0, mmu.Table.PresentCount);
        mmu.Translate(vcpu, new Gpa(0x5000), AccessKind.Read, out p);
        Assert.Equal(0x5A, p[7]);
        Assert.Equal(1, _manager.Discard(new Gpa(0x5000), 4096));
        mmu.Translate(vcpu, new Gpa(0x5000), AccessKind.Read, out p);
        Assert.Equal(0, p[7]);
        Assert.Equal(GuestRange.Invalid, _manager.PageOut(new Gpa(0x5001), 4096));
        Assert.Equal(GuestRange.Invalid, _manager.Discard(new Gpa(Ram - 4096), 8192));
        Assert.Equal(0, checker.ViolationCount);
        host.Dispose();
    }

    /// <summary>
    /// The schedule from the 2008 thread:
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
    [InlineData(NotifierProtocol.Broken2008, true)]
    [InlineData(NotifierProtocol.Sequence, false)]
    public void FaultRacingReclaim_ThreadSchedule_CheckerCatchesOnlyTheBrokenProtocol(NotifierProtocol protocol, bool expectViolation)
    {
        var (host, mmu, checker, vcpu) = Make(protocol);
        var gpa = new Gpa(0x7000);
        bool once = true;
        mmu.AfterGetUserPageHook = (g, frame) =>
        {
            if (!once) return;
            once = false;
            // The reclaimer runs to completion between get_user_pages and the install.
            var reclaim = new Thread(() => host.Evict(host.RamBase.Add(gpa.Value), 4096));
            reclaim.Start();
            Assert.True(reclaim.Join(Patience));
        };
        Assert.Equal(TranslateStatus.Ok, mmu.Translate(vcpu, gpa, AccessKind.Write, out _));
        output.WriteLine(checker.FirstViolation?.ToString() ?? "no violation");
        Assert.Equal(expectViolation, checker.ViolationCount > 0);
        if (expectViolation)
            Assert.Contains("no longer maps", checker.FirstViolation!.Rule);
        else
        {
            var e = mmu.Table.Lookup(gpa.PageNumber);
            Assert.True(host.FrameBacks(e.Frame, host.RamBase.Add(gpa.Value)));
        }
        host.Dispose();
    }

    [Fact]
    public void Fault_WhileInvalidationInProgressOverItsPage_WaitsForTheEndThenInstallsTheNewFrame()
    {
        var (host, mmu, checker, vcpu) = Make();
        var gpa = new Gpa(0x9000);
        var hva = host.RamBase.Add(gpa.Value);
        var range = new InvalidateRange(hva, hva.Add(4096), InvalidateEvent.Clear, true);
        int hookCalls = 0;
        var startDone = new ManualResetEventSlim();
        var letEnd = new ManualResetEventSlim();
        Thread? invalidator = null;
        mmu.AfterGetUserPageHook = (_, _) =>
        {
            if (Interlocked.Increment(ref hookCalls) != 1) return;
            invalidator = new Thread(() =>
            {
                host.Memory.Notifiers.InvalidateRangeStart(range);
                startDone.Set();
                letEnd.Wait(Patience);
                host.Memory.Notifiers.InvalidateRangeEnd(range);
            });
            invalidator.Start();
            Assert.True(startDone.Wait(Patience));
        };
        var fault = new Thread(() => mmu.Translate(vcpu, gpa, AccessKind.Read, out _));
        fault.Start();
        Assert.True(startDone.Wait(Patience));
        // In progress over our page: the fault must not complete yet.
        Assert.False(fault.Join(TimeSpan.FromMilliseconds(100)));
        Assert.False(mmu.Table.Lookup(gpa.PageNumber).IsPresent);
        letEnd.Set();
        Assert.True(fault.Join(Patience));
        Assert.True(invalidator!.Join(Patience));
        Assert.True(hookCalls >= 2, "the fault dropped its first page and retried");
        Assert.True(mmu.Table.Lookup(gpa.PageNumber).IsPresent);
        Assert.Equal(0, checker.ViolationCount);
        host.Dispose();
    }

    [Fact]
    public void OverlappingInvalidations_FaultRetriesUntilBothEnd()
    {
        var (host, mmu, checker, vcpu) = Make();
        var a = new InvalidateRange(host.RamBase, host.RamBase.Add(8 * 4096), InvalidateEvent.Clear, true);
        var b = new InvalidateRange(host.RamBase.Add(4 * 4096), host.RamBase.Add(16 * 4096), InvalidateEvent.Unmap, true);
        host.Memory.Notifiers.InvalidateRangeStart(a);
        host.Memory.Notifiers.InvalidateRangeStart(b);
        var fault = new Thread(() => mmu.Translate(vcpu, new Gpa(10 * 4096), AccessKind.Read, out _));
        fault.Start();
        host.Memory.Notifiers.InvalidateRangeEnd(a);
        // b still covers page 10 (and the merged range [0, 16) stays until the last end).
        Assert.False(fault.Join(TimeSpan.FromMilliseconds(100)));
        host.Memory.Notifiers.InvalidateRangeEnd(b);
        Assert.True(fault.Join(Patience));
        Assert.True(mmu.Table.Lookup(10).IsPresent);
        Assert.Equal(0, checker.ViolationCount);
        host.Dispose();
    }

    [Fact]
    public void Zap_OfEntryWrittenThroughTheSecondaryMmu_HandsTheDirtyBitToTheHost()
    {
        var (host, mmu, _, vcpu) = Make();
        mmu.Translate(vcpu, new Gpa(0x2000), AccessKind.Read, out _);
        mmu.Translate(vcpu, new Gpa(0x2000), AccessKind.Write, out byte* p);
        Assert.True(mmu.Table.Lookup(2).IsDirty);
        p[0] = 1;
        _manager.PageOut(new Gpa(0x2000), 4096);
        mmu.Translate(vcpu, new Gpa(0x2000), AccessKind.Read, out p);
        Assert.Equal(1, p[0]);
        host.Dispose();
    }

    [Fact]
    public void Invalidation_WithVcpuInGuestMode_WaitsForItsFlushAcknowledgement()
    {
        var (host, mmu, checker, vcpu) = Make();
        checker.WatchVcpus(() => [vcpu]);
        mmu.Translate(vcpu, new Gpa(0x4000), AccessKind.Write, out _);
        vcpu.EnterGuest();
        var pageOut = new Thread(() => _manager.PageOut(new Gpa(0x4000), 4096));
        pageOut.Start();
        // The vCPU is "running guest code" and has not looked at its requests.
        Assert.False(pageOut.Join(TimeSpan.FromMilliseconds(100)));
        Assert.True(vcpu.HasRequests);
        Assert.Equal(VcpuLink.FlushRequest, vcpu.TakeRequests());
        vcpu.AcknowledgeFlush();
        Assert.True(pageOut.Join(Patience));
        vcpu.ExitGuest();
        Assert.Equal(0, checker.ViolationCount);
        host.Dispose();
    }

    [Fact]
    public void Invalidation_AsksOnlyTheVcpusThatMayHoldThePage()
    {
        var (host, mmu, checker, vcpu) = Make();
        var other = new VcpuLink(1);
        mmu.AttachVcpu(other);
        checker.WatchVcpus(() => [vcpu, other]);
        mmu.Translate(vcpu, new Gpa(0x4000), AccessKind.Write, out _);
        other.EnterGuest();     // running guest code, never acknowledging
        Assert.Equal(1, _manager.PageOut(new Gpa(0x4000), 4096) >= 0 ? 1 : 0);
        Assert.False(other.HasRequests, "vCPU 1 never cached the page and is not asked to flush");
        Assert.True(vcpu.HasRequests);
        mmu.Translate(other, new Gpa(0x4000), AccessKind.Read, out _);
        var pageOut = new Thread(() => _manager.PageOut(new Gpa(0x4000), 4096));
        pageOut.Start();
        Assert.False(pageOut.Join(TimeSpan.FromMilliseconds(100)));   // now it holds it: the zap waits for it
        other.TakeRequests(); other.AcknowledgeFlush();
        Assert.True(pageOut.Join(Patience));
        other.ExitGuest();
        Assert.Equal(0, checker.ViolationCount);
        host.Dispose();
    }

    [Fact]
    public void Aging_DuringAFault_ReportsAndClearsOnlyInstalledAccessBits()
    {
        var (host, mmu, checker, vcpu) = Make();
        mmu.Translate(vcpu, new Gpa(0x1000), AccessKind.Read, out _);
        bool youngDuringFault = true;
        mmu.AfterGetUserPageHook = (g, _) =>
        {
            if (g.PageNumber != 3) return;
            var ager = new Thread(() => youngDuringFault = mmu.ClearYoung(host.RamBase.Add(3 * 4096), host.RamBase.Add(4 * 4096)));
            ager.Start();
            Assert.True(ager.Join(Patience));
        };
        mmu.Translate(vcpu, new Gpa(0x3000), AccessKind.Read, out _);
        Assert.False(youngDuringFault);       // nothing installed for page 3 while the fault was in flight
        Assert.True(mmu.TestYoung(host.RamBase.Add(3 * 4096)));
        Assert.True(mmu.ClearYoung(host.RamBase, host.RamBase.Add(Ram)));
        Assert.False(mmu.TestYoung(host.RamBase.Add(0x1000)));
        Assert.Equal(0, checker.ViolationCount);
        host.Dispose();
    }

    [Fact]
    public void ConcurrentFaultsAndPageOuts_BoundedStorm_NoViolationAndContentsKept()
    {
        const int seed = 1234;
        output.WriteLine($"seed {seed}");
        var (host, mmu, checker, vcpu) = Make(frames: 64);
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
            vcpu.EnterGuest();
            vcpu.TakeRequests(); vcpu.AcknowledgeFlush();
            Assert.Equal(TranslateStatus.Ok, mmu.Translate(vcpu, new Gpa((ulong)page * 4096), write ? AccessKind.Write : AccessKind.Read, out byte* p));
            if (vcpu.HasRequests) { vcpu.ExitGuest(); continue; }   // flushed meanwhile: retry later
            if (write) p[page] = oracle[page] = (byte)rng.Next(1, 256);
            else Assert.Equal(oracle[page], p[page]);
            vcpu.ExitGuest();
        }
        Assert.True(pager.Join(Patience));
        output.WriteLine($"checks {checker.Checks}");
        Assert.Equal(0, checker.ViolationCount);
        host.Dispose();
    }
}

public sealed class EptMmuProtocolOnTestHostTests(ITestOutputHelper output) : EptMmuProtocolContract(output)
{
    private sealed class Small(TestHost host) : IProtocolHost
    {
        public IHostMemory Memory => host;
        public IHostMadvise Madvise => host;
        public Hva RamBase => TestHost.RamBase;
        public void Evict(Hva start, ulong bytes) => host.Evict(start, bytes, keep: true);
        public void Dispose() => host.Dispose();
    }

    protected override IProtocolHost CreateHost(int frames, bool broken2008, MmuInvariantChecker checker) =>
        new Small(new TestHost(frames, broken2008) { FrameFreed = checker.OnFrameFree });
}

public sealed class EptMmuProtocolOnRealHostTests(ITestOutputHelper output) : EptMmuProtocolContract(output)
{
    private sealed class Real : IProtocolHost
    {
        private readonly Mmu.Host.HostMemory _host;
        private readonly Mmu.Host.HostAddressSpace _space;
        public Real(int frames, bool broken2008, MmuInvariantChecker checker)
        {
            _host = new Mmu.Host.HostMemory(new Mmu.Host.HostMemoryOptions { HostMemoryBytes = (ulong)frames << Page.Shift, SwapBytes = 4UL << 20 });
            _host.FrameFreed = checker.OnFrameFree;
            _space = _host.CreateAddressSpace();
            _space.Notifiers.Protocol = NotifierProtocols.Of(broken2008 ? NotifierProtocol.Broken2008 : NotifierProtocol.Sequence);
            RamBase = _space.Map(Ram, Mmu.Host.HostProtection.ReadWrite);
            var binding = new SecondaryHostBinding(_space);
            Memory = binding;
            Madvise = binding;
        }
        public IHostMemory Memory { get; }
        public IHostMadvise Madvise { get; }
        public Hva RamBase { get; }
        // MADV_DONTNEED clears PTEs whatever references are held, as try_to_unmap does.
        public void Evict(Hva start, ulong bytes) => _space.DontNeed(start, bytes);
        public void Dispose() { _space.Dispose(); _host.Dispose(); }
    }

    protected override IProtocolHost CreateHost(int frames, bool broken2008, MmuInvariantChecker checker) =>
        new Real(frames, broken2008, checker);
}

public unsafe class EptMmuSlotTests
{
    [Fact]
    public void AddSlot_WhileInvalidationInFlight_WaitsForItsEnd()
    {
        using var host = new TestHost(64);
        using var mmu = new EptMmu(host, 16 * 4096, TestHost.RamBase);
        var range = new InvalidateRange(TestHost.RamBase, TestHost.RamBase.Add(4096), InvalidateEvent.Clear, true);
        host.Notifiers.InvalidateRangeStart(range);
        var add = new Thread(() => mmu.AddSlot(new MemorySlot(1, new Gpa(1UL << 30), 4096, TestHost.RamBase.Add(1UL << 30))));
        add.Start();
        Assert.False(add.Join(TimeSpan.FromMilliseconds(100)));
        Assert.Null(mmu.Slots.Find(new Gpa(1UL << 30)));
        host.Notifiers.InvalidateRangeEnd(range);
        Assert.True(add.Join(TimeSpan.FromSeconds(20)));
        Assert.NotNull(mmu.Slots.Find(new Gpa(1UL << 30)));
    }

    [Fact]
    public void RemoveSlot_ZapsItsEntries_AndLaterAccessIsUnbacked()
    {
        using var host = new TestHost(64);
        using var mmu = new EptMmu(host, 16 * 4096, TestHost.RamBase);
        var vcpu = new VcpuLink(0);
        mmu.AttachVcpu(vcpu);
        mmu.AddSlot(new MemorySlot(1, new Gpa(1UL << 30), 4 * 4096, new Hva(0x7f10_0000_0000)));
        Assert.Equal(TranslateStatus.Ok, mmu.Translate(vcpu, new Gpa((1UL << 30) + 4096), AccessKind.Write, out _));
        Assert.Equal(1, mmu.Table.PresentCount);
        Assert.True(mmu.RemoveSlot(1));
        Assert.Equal(0, mmu.Table.PresentCount);
        Assert.Equal(TranslateStatus.Unbacked, mmu.Translate(vcpu, new Gpa((1UL << 30) + 4096), AccessKind.Read, out _));
        Assert.False(mmu.RemoveSlot(1));
    }
}
