using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using Xunit;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Metrics;

/// <summary>The real host and EPT MMU recording into a hub: fault kinds, invalidation causes, shootdown steps.</summary>
public sealed class HostRecordingTests : IDisposable
{
    private const int RamPages = 64;
    private readonly HostMemory _host = NewHost(frames: 256);
    private readonly HostAddressSpace _mm;
    private readonly Hva _ram;
    private readonly MeasurementHub _hub = new(vcpus: 1);
    private readonly EptMmu _mmu;
    private readonly GuestMemoryManager _manager;
    private readonly VcpuLink _vcpu = new(0);

    public HostRecordingTests()
    {
        _mm = _host.CreateAddressSpace();
        _ram = _mm.Map(RamPages * Page.Size, HostProtection.ReadWrite);
        _host.Events = _hub;
        var binding = new SecondaryHostBinding(_mm);
        _mmu = new EptMmu(binding, RamPages * Page.Size, _ram) { Events = _hub };
        _manager = new GuestMemoryManager(binding, _mmu);
        _mmu.AttachVcpu(_vcpu);
    }

    public void Dispose()
    {
        _mmu.Dispose();
        _host.Dispose();
        _hub.Dispose();
    }

    private unsafe void Touch(int page, AccessKind kind = AccessKind.Write) =>
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, Gpa.FromPageNumber((ulong)page), kind, out _));

    private long Faults(FaultKind kind) => _hub.Snapshot().Total.Faults[kind].TotalCount;

    private long Invalidations(InvalidateCause cause) => _hub.Snapshot().Total.Invalidations[cause].TotalCount;

    /// <summary>Zap the secondary entries of a page and leave the host page as it is.</summary>
    private void ZapSecondaryOnly(int page)
    {
        var hva = _ram.Add((ulong)page * Page.Size);
        var r = new InvalidateRange(hva, hva.Add(Page.Size), InvalidateEvent.Clear, MayBlock: true);
        _mm.Notifiers.InvalidateRangeStart(r);
        _mm.Notifiers.InvalidateRangeEnd(r);
    }

    private sealed class FailingWrites : ISwapFaultInjector
    {
        public Exception? BeforeWrite(uint firstSlot, int slots) => new IOException("injected");
        public Exception? BeforeRead(uint slot) => null;
    }

    [Fact]
    public void FaultCompleted_EachHostAnswer_ClassifiedByKind()
    {
        Touch(0);
        Assert.Equal(1, Faults(FaultKind.ZeroFill));                 // first touch

        ZapSecondaryOnly(0);
        Touch(0);
        Assert.Equal(1, Faults(FaultKind.Present));                  // host page still there

        Assert.Equal(1, _manager.PageOut(Gpa.FromPageNumber(0), Page.Size));
        Touch(0, AccessKind.Read);
        Assert.Equal(1, Faults(FaultKind.SwapIn));                   // read back from the file

        Touch(1);
        _host.Swap.FaultInjector = new FailingWrites();
        Assert.Equal(0, _manager.PageOut(Gpa.FromPageNumber(1), Page.Size));   // unmapped, its write failed: still in the swap cache
        _host.Swap.FaultInjector = null;
        Touch(1);
        Assert.Equal(1, Faults(FaultKind.SwapCacheHit));

        var total = _hub.Snapshot().Total;
        Assert.Equal(2, total.Faults[FaultKind.ZeroFill].TotalCount);
        Assert.Equal(5, total.Faults.Values.Sum(h => h.TotalCount));
        Assert.Equal(1, total.SwapReads.TotalCount);
        Assert.Equal(2, total.PageOutBatches.TotalCount);
        Assert.Equal(1, total.PagesPagedOut);
    }

    [Fact]
    public void InvalidateCompleted_EachHostOperation_CarriesItsCause()
    {
        for (int i = 0; i < RamPages; i++) Touch(i);
        _manager.PageOut(Gpa.FromPageNumber(0), 2 * Page.Size);
        Assert.Equal(1, Invalidations(InvalidateCause.PageOut));
        Assert.Equal(2, _hub.Snapshot().Total.InvalidatedPages[InvalidateCause.PageOut]);

        _manager.Discard(Gpa.FromPageNumber(4), Page.Size);
        Assert.Equal(1, Invalidations(InvalidateCause.Discard));

        _mm.Protect(_ram.Add(8 * Page.Size), Page.Size, HostProtection.ReadWrite);
        Assert.Equal(1, Invalidations(InvalidateCause.Protect));

        _mm.Unmap(_ram.Add((RamPages - 4) * Page.Size), 4 * Page.Size);
        Assert.Equal(1, Invalidations(InvalidateCause.Unmap));
        Assert.Equal(4, _hub.Snapshot().Total.InvalidatedPages[InvalidateCause.Unmap]);

        Assert.True(_host.ReclaimNow(8, ignoreAccessed: true) > 0);
        Assert.True(Invalidations(InvalidateCause.Reclaim) > 0);

        _mm.Dispose();
        Assert.Equal(1, Invalidations(InvalidateCause.Teardown));
        Assert.Equal(RamPages, _hub.Snapshot().Total.InvalidatedPages[InvalidateCause.Teardown]);

        var total = _hub.Snapshot().Total;
        // One of each operation, and reclaim's one-page invalidations: nothing else was counted.
        Assert.Equal(5 + total.Invalidations[InvalidateCause.Reclaim].TotalCount, total.Invalidations.Values.Sum(h => h.TotalCount));
    }

    [Fact]
    public void InvalidateCompleted_Broken2008Order_RecordedByTheHostWithItsCause()
    {
        // The protocol is chosen before the MMU subscribes: a space of its own.
        var host = NewHost(frames: 64);
        var mm = host.CreateAddressSpace();
        var ram = mm.Map(16 * Page.Size, HostProtection.ReadWrite);
        mm.Notifiers.Protocol = Broken2008Protocol.Instance;
        using var hub = new MeasurementHub(vcpus: 1);
        host.Events = hub;
        var binding = new SecondaryHostBinding(mm);
        var mmu = new EptMmu(binding, 16 * Page.Size, ram) { Events = hub };
        var manager = new GuestMemoryManager(binding, mmu);
        var vcpu = new VcpuLink(0);
        mmu.AttachVcpu(vcpu);
        for (int i = 0; i < 4; i++)
            unsafe { Assert.Equal(TranslateStatus.Ok, mmu.Translate(vcpu, Gpa.FromPageNumber((ulong)i), AccessKind.Write, out _)); }
        manager.PageOut(Gpa.FromPageNumber(0), 4 * Page.Size);
        manager.Discard(Gpa.FromPageNumber(0), Page.Size);
        var total = hub.Snapshot().Total;
        Assert.Equal(1, total.Invalidations[InvalidateCause.PageOut].TotalCount);
        Assert.Equal(4, total.InvalidatedPages[InvalidateCause.PageOut]);
        Assert.Equal(1, total.Invalidations[InvalidateCause.Discard].TotalCount);
        mmu.Dispose();
        host.Dispose();
    }

    [Fact]
    public void Trace_Broken2008RaceCaughtByTheChecker_ShowsFaultInvalidationAndViolation()
    {
        var host = NewHost(frames: 64);
        var mm = host.CreateAddressSpace();
        var ram = mm.Map(16 * Page.Size, HostProtection.ReadWrite);
        mm.Notifiers.Protocol = Broken2008Protocol.Instance;
        using var hub = new MeasurementHub(vcpus: 1, traceLimit: 10_000);
        host.Events = hub;
        var checker = new MmuInvariantChecker { Events = hub };
        var binding = new SecondaryHostBinding(mm);
        var mmu = new EptMmu(binding, 16 * Page.Size, ram) { Events = hub, Checker = checker };
        var manager = new GuestMemoryManager(binding, mmu);
        var vcpu = new VcpuLink(0);
        mmu.AttachVcpu(vcpu);
        var gpa = Gpa.FromPageNumber(3);
        bool once = true;
        mmu.AfterGetUserPageHook = (_, _) =>
        {
            if (!once) return;
            once = false;
            // A discard runs to completion between get_user_pages and the install (a page-out
            // would skip the page: the fault holds a reference to its frame).
            var driver = new Thread(() => { hub.BindCurrentThread("page-out driver"); manager.Discard(gpa, Page.Size); });
            driver.Start();
            driver.Join();
        };
        unsafe { Assert.Equal(TranslateStatus.Ok, mmu.Translate(vcpu, gpa, AccessKind.Write, out _)); }
        Assert.True(checker.ViolationCount > 0);

        var trace = hub.Snapshot().Trace!;
        string TrackOf(TraceEvent e) => trace.Tracks[e.Track].Name;
        var fault = trace.Events.Single(e => e.Kind == TraceKind.Fault);
        var invalidate = trace.Events.Single(e => e.Kind == TraceKind.Invalidate);
        var violation = trace.Events.First(e => e.Kind == TraceKind.Violation);
        Assert.Equal(gpa.PageNumber, fault.A);
        Assert.Equal("vCPU 0", TrackOf(fault));
        Assert.Equal("page-out driver", TrackOf(invalidate));
        Assert.Equal((int)InvalidateCause.Discard, invalidate.C);
        Assert.Equal(gpa.PageNumber, violation.A);
        // The interleaving: the invalidation ran inside the fault, and the violation came at its install.
        Assert.True(fault.StartTicks <= invalidate.StartTicks && invalidate.EndTicks <= fault.EndTicks);
        Assert.True(invalidate.EndTicks <= violation.StartTicks && violation.StartTicks <= fault.EndTicks);
        mmu.Dispose();
        host.Dispose();
    }

    /// <summary>A vCPU TLB the test steers through the shootdown steps.</summary>
    private sealed class FakeTlb(bool mayHold, bool quiescent) : IVcpuTlb
    {
        public bool MayHold(ulong firstGfn, ulong lastGfn) => mayHold;
        public void ShootDown(ulong firstGfn, ulong lastGfn) { }
        public bool IsQuiescent => quiescent;
        public bool Maps(ulong gfn, nint hostPage) => false;
    }

    private void PageOutWhileInGuest(int page, IVcpuTlb tlb)
    {
        _vcpu.AttachTlb(tlb);
        _vcpu.EnterGuest();
        try
        {
            Touch(page);
            _manager.PageOut(Gpa.FromPageNumber((ulong)page), Page.Size);
        }
        finally
        {
            _vcpu.ExitGuest();
            _vcpu.TakeRequests();
            _vcpu.AcknowledgeFlush();
            _vcpu.DetachTlb();
        }
    }

    [Fact]
    public void ShootdownCompleted_StepThatCompletedEachFlush_Counted()
    {
        PageOutWhileInGuest(0, new FakeTlb(mayHold: false, quiescent: false));
        PageOutWhileInGuest(1, new FakeTlb(mayHold: true, quiescent: true));

        // Step 4 needs the vCPU to acknowledge: this thread plays the vCPU, another invalidates.
        _vcpu.AttachTlb(new FakeTlb(mayHold: true, quiescent: false));
        _vcpu.EnterGuest();
        Touch(2);
        var invalidator = new Thread(() => _manager.PageOut(Gpa.FromPageNumber(2), Page.Size));
        invalidator.Start();
        while (invalidator.IsAlive)
        {
            if ((_vcpu.TakeRequests() & VcpuLink.FlushRequest) != 0) _vcpu.AcknowledgeFlush();
            Thread.Yield();
        }
        invalidator.Join();
        _vcpu.ExitGuest();
        _vcpu.DetachTlb();

        var s = _hub.Snapshot();
        Assert.Equal(1, s.ShootdownCounts[ShootdownStep.NeverHeld]);
        Assert.Equal(1, s.ShootdownCounts[ShootdownStep.ShotDown]);
        Assert.Equal(1, s.ShootdownCounts[ShootdownStep.Acknowledged] + s.ShootdownCounts[ShootdownStep.Waited]);
        var counts = _mmu.Shootdowns;
        Assert.Equal(counts.NotHeld, s.ShootdownCounts[ShootdownStep.NeverHeld]);
        Assert.Equal(counts.ShotDown, s.ShootdownCounts[ShootdownStep.ShotDown]);
        Assert.Equal(counts.Acknowledged, s.ShootdownCounts[ShootdownStep.Acknowledged]);
        Assert.Equal(counts.Waited, s.ShootdownCounts[ShootdownStep.Waited]);
    }
}
