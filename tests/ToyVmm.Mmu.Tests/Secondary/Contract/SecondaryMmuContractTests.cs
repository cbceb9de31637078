using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using Xunit;
using Xunit.Abstractions;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Secondary.Contract;

/// <summary>
/// What every secondary MMU owes the rest of ToyVmm (docs/DESIGN.md "The
/// secondary MMU contract"), run over the real simulated host: translation, the host's
/// fault kinds, every invalidation event, aging, slot changes, the 2008
/// interleaving under both protocols, shootdown and the checker. A secondary
/// MMU plugs in by subclassing this with its factory and two seams. The
/// tests marked with a <see cref="HostKind"/> also run over the small
/// <see cref="TestHost"/>, which evicts pages its own way. This file is the
/// fixture; the tests are in SecondaryMmuContractTests.Translate, .Invalidation,
/// .Protocol and .Shootdown.
/// </summary>
public abstract unsafe partial class SecondaryMmuContractTests(ITestOutputHelper output) : IDisposable
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

    /// <summary>
    /// False for an MMU whose pages are held by a reference across the fault and whose
    /// faults are recalled by list (a grant's attacher): the 2008 order then frees no
    /// frame under a fault, and the checker has nothing to catch.
    /// </summary>
    protected virtual bool Broken2008Races => true;

    /// <summary>
    /// True for an MMU that sits behind something holding a host reference to every page
    /// it maps (a grant's attacher: the grant's PFN table). Without notifiers (<c>none</c>)
    /// such pages are pinned, not freed under the entry: the host pages out nothing.
    /// </summary>
    protected virtual bool HoldsPageReferences => false;

    /// <summary>
    /// False for an MMU that hears of the host only through a recall that is over for it
    /// when the host's start returns (a grant's attacher): its own invalidate sequence
    /// never has the host's invalidation in flight, so its slot changes do not wait for
    /// the host's end (its faults still do: the grant holds back fills of the range).
    /// </summary>
    protected virtual bool SlotChangesWaitForHostInvalidations => true;

    /// <summary>Bytes a secondary fault may allocate once warm (0: nothing, the MMUs' own faults).</summary>
    protected virtual int FaultAllocationBound => 0;

    private bool Maps(Gpa gpa, out Hfn frame)
    {
        var m = Lookup(_mmu, gpa);
        frame = m?.Frame ?? default;
        return m is not null;
    }

    /// <param name="bare">True: the MMU gets a checker and an event sink that do nothing, so that a test of
    /// the MMU's own allocations leaves out the checker's bookkeeping and the measurement's counts (made
    /// at the first latency of each range, LatencyCountsTests).</param>
    private void Make(HostKind kind = HostKind.Real, NotifierProtocol protocol = NotifierProtocol.Sequence, int frames = 256, bool bare = false)
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
        _mmu = bare ? CreateMmu(_binding, Ram, _ram, NoChecker.Instance, NoEvents.Instance) : CreateMmu(_binding, Ram, _ram, _checker, _hub);
        Assert.Equal(protocol, _binding.Notifiers.Protocol.Kind);   // the MMU follows its host's protocol
        _manager = new GuestMemoryManager(madvise, _mmu);
        _mmu.AttachVcpu(_vcpu);
        if (PinnedVcpuCpu >= 0) _vcpu.SetPinnedCpu(PinnedVcpuCpu);
    }

    /// <summary>
    /// The CPU the fixture's vCPU is said to be pinned to (-1: not pinned). The pinned runs of the
    /// contract put it on the first CPU this process may use, which the invalidating test thread
    /// may or may not be running on: both ways of ordering a pinned vCPU are then taken.
    /// </summary>
    protected virtual int PinnedVcpuCpu => -1;

    /// <summary>Clear the PTEs of a guest page whatever references are held (reclaim's unmap), through the host's notifier order.</summary>
    private void Evict(Gpa gpa)
    {
        if (_small is not null) _small.Evict(_ram.Add(gpa.PageBase.Value), Page.Size, keep: true);
        else _mm.DontNeed(_ram.Add(gpa.PageBase.Value), Page.Size);   // MADV_DONTNEED clears PTEs whatever references are held, as try_to_unmap does
    }

    /// <summary>Host-virtual memory for a second slot.</summary>
    private Hva MapMore(ulong bytes) => _small is not null ? TestHost.RamBase.Add(1UL << 30) : _mm.Map(bytes, HostProtection.ReadWrite);

    private sealed class NoChecker : IMmuInvariantChecker
    {
        public static readonly NoChecker Instance = new();
        public void OnInstall(IHostMemory host, Gpa gpa, Hva hva, Hfn frame) { }
        public void OnZap(IHostMemory host, ZappedEntry zapped) { }
        public void OnTlbFill(IHostMemory host, int vcpu, Gpa gpa, Hva hva, Hfn frame) { }
    }

    private sealed class NoEvents : IMmuEventSink
    {
        public static readonly NoEvents Instance = new();
        public void FaultCompleted(int vcpu, ulong gfn, FaultKind kind, long startTicks, long endTicks) { }
        public void FaultRetried(int vcpu) { }
        public void InvalidateCompleted(InvalidateCause cause, ulong firstPage, ulong pages, long startTicks, long endTicks) { }
        public void ShootdownCompleted(int vcpu, ShootdownStep step, long startTicks, long endTicks) { }
        public void PageOutBatch(long pages, long startTicks, long endTicks) { }
        public void SwapWritten(uint firstSlot, int pages, long startTicks, long endTicks) { }
        public void SwapRead(uint slot, long startTicks, long endTicks) { }
        public void Violation(ulong gfn, uint frame, int vcpu) { }
    }

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
}
