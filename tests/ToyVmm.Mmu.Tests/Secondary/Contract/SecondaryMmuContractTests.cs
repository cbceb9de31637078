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
/// MMU plugs in by subclassing this with its factory and two seams.
/// </summary>
public abstract unsafe class SecondaryMmuContractTests(ITestOutputHelper output) : IDisposable
{
    protected const int RamPages = 64;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    private HostMemory _host = null!;
    private HostAddressSpace _mm = null!;
    private Hva _ram;
    private IHostMemory _binding = null!;
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

    /// <summary>Whether a secondary entry of the MMU now maps the guest page of <paramref name="gpa"/>, and to which frame.</summary>
    protected abstract bool Maps(ISecondaryMmu mmu, Gpa gpa, out Hfn frame);

    private void Make(NotifierProtocol protocol = NotifierProtocol.Sequence, int frames = 256)
    {
        _host = NewHost(frames);
        _mm = _host.CreateAddressSpace();
        _mm.Notifiers.Protocol = NotifierProtocols.Of(protocol);   // chosen before the MMU subscribes
        _ram = _mm.Map(RamPages * Page.Size, HostProtection.ReadWrite);
        _checker = new MmuInvariantChecker();
        _checker.WatchVcpus(() => [_vcpu]);
        _host.FrameFreed = _checker.OnFrameFree;
        _hub = new MeasurementHub(vcpus: 1);
        var binding = new SecondaryHostBinding(_mm);
        _binding = binding;
        _mmu = CreateMmu(binding, RamPages * Page.Size, _ram, _checker, _hub);
        _manager = new GuestMemoryManager(binding, _mmu);
        _mmu.AttachVcpu(_vcpu);
    }

    public void Dispose()
    {
        (_mmu as IDisposable)?.Dispose();
        _mm?.Dispose();
        _host?.Dispose();
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
        Assert.True(Maps(_mmu, Gpa.FromPageNumber(5), out var frame));
        Assert.True(_mm.FrameBacks(frame, HvaOf(5)));
        Assert.True(p == _binding.FrameAddress(frame));
        Assert.True(Touch(5, AccessKind.Read) == p);   // a second access finds the same page
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
        Assert.Equal(TranslateStatus.Unbacked, _mmu.Translate(_vcpu, new Gpa(RamPages * Page.Size), AccessKind.Read, out _));
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
        Assert.False(Maps(_mmu, Gpa.FromPageNumber(0), out _));
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
        Assert.True(Maps(_mmu, Gpa.FromPageNumber(3), out _));
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
        Assert.False(Maps(_mmu, Gpa.FromPageNumber(3), out _));
        Assert.True(_vcpu.HasRequests, "the holder of the zapped pages is asked to flush");
        if (ev is HostEvent.Protect) Assert.Equal(0, freed);   // protect frees nothing
        else if (ev is not HostEvent.Reclaim and not HostEvent.PageOut) Assert.True(freed > 0);
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
        Assert.True(_mm.Notifiers.ClearYoung(_ram, HvaOf(RamPages)));
        Assert.False(_mm.Notifiers.TestYoung(HvaOf(2)));
        Assert.False(_mm.Notifiers.ClearFlushYoung(_ram, HvaOf(RamPages)));
        Assert.True(Maps(_mmu, Gpa.FromPageNumber(2), out _));   // aging does not zap
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
        Assert.False(Maps(_mmu, start.Add(Page.Size), out _));
        Assert.Equal(TranslateStatus.Unbacked, _mmu.Translate(_vcpu, start.Add(Page.Size), AccessKind.Read, out _));
        Assert.False(_mmu.RemoveSlot(1));
        Assert.True(Maps(_mmu, Gpa.FromPageNumber(1), out _));   // the other slot is untouched
        AssertNoViolation();
    }

    /// <summary>
    /// The schedule from the 2008 thread (docs/DESIGN.md "The 2008 interleaving"): a
    /// discard runs to completion between the fault's get_user_pages and its install.
    /// Broken-2008 installs a frame the host no longer maps and the checker says so;
    /// the sequence protocol retries and installs the page's new frame.
    /// </summary>
    [Theory]
    [InlineData(NotifierProtocol.Broken2008, true)]
    [InlineData(NotifierProtocol.Sequence, false)]
    public void Fault_2008Schedule_CheckerCatchesOnlyTheBrokenProtocol(NotifierProtocol protocol, bool expectViolation)
    {
        Make(protocol);
        var gpa = Gpa.FromPageNumber(6);
        int calls = 0;
        SetAfterGetUserPage(_mmu, (_, _) =>
        {
            if (Interlocked.Increment(ref calls) != 1) return;
            var discard = new Thread(() => _manager.Discard(gpa, Page.Size));
            discard.Start();
            Assert.True(discard.Join(Patience));
        });
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, gpa, AccessKind.Write, out _));
        output.WriteLine(_checker.FirstViolation?.ToString() ?? "no violation");
        Assert.Equal(expectViolation, _checker.ViolationCount > 0);
        if (expectViolation)
            Assert.Contains("no longer maps", _checker.FirstViolation!.Rule);
        else
        {
            Assert.True(calls >= 2, "the fault dropped its first page and retried");
            Assert.True(Maps(_mmu, gpa, out var frame));
            Assert.True(_mm.FrameBacks(frame, HvaOf(6)));
        }
    }

    [Fact]
    public void Shootdown_VcpuInGuestModeHoldingThePage_IsWaitedForBeforeTheInvalidationReturns()
    {
        Make();
        Touch(4);
        _vcpu.EnterGuest();
        var pageOut = new Thread(() => _manager.PageOut(Gpa.FromPageNumber(4), Page.Size));
        pageOut.Start();
        // The vCPU is "running guest code" and has not looked at its requests: the page-out waits.
        Assert.False(pageOut.Join(TimeSpan.FromMilliseconds(100)));
        Assert.Equal(VcpuLink.FlushRequest, _vcpu.TakeRequests());
        _vcpu.AcknowledgeFlush();
        Assert.True(pageOut.Join(Patience));
        _vcpu.ExitGuest();
        Assert.False(Maps(_mmu, Gpa.FromPageNumber(4), out _));
        AssertNoViolation();
    }

    [Fact]
    public void Shootdown_VcpuInGuestModeNotHoldingThePage_IsNotAsked()
    {
        Make();
        var other = new VcpuLink(1);
        _mmu.AttachVcpu(other);
        Touch(4);
        other.EnterGuest();     // running guest code, never acknowledging
        Assert.Equal(1, _manager.PageOut(Gpa.FromPageNumber(4), Page.Size));
        Assert.False(other.HasRequests);
        Assert.True(_vcpu.HasRequests);
        other.ExitGuest();
        AssertNoViolation();
    }

    [Fact]
    public void Checker_FrameFreedWhileAnEntryMapsIt_IsReported()
    {
        Make();
        MmuViolation? seen = null;
        _checker.Violated += v => seen = v;
        Touch(9);
        Assert.True(Maps(_mmu, Gpa.FromPageNumber(9), out var frame));
        _checker.OnFrameFree(frame);    // as a host that skipped the invalidation would
        Assert.Equal(1, _checker.ViolationCount);
        Assert.Equal("a host frame was freed while a secondary entry still maps it", seen!.Rule);
        Assert.Equal(Gpa.FromPageNumber(9), seen.Gpa);
    }
}
