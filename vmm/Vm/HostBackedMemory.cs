using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Grants;
using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Mmu.Secondary.Shadow;

namespace ToyVmm.Vm;

/// <summary>How guest RAM is backed.</summary>
/// <param name="HostMemoryBytes">The host frame pool; guest RAM may be many times larger.</param>
/// <param name="SwapFilePath">The swap file; null for a temporary file deleted at exit.</param>
/// <param name="SwapBytes">Size of the swap file.</param>
/// <param name="Protocol">The fault/invalidate protocol (broken-2008, pin and none only to watch what notifiers prevent).</param>
/// <param name="Check">Run the invariant checker at every install, TLB fill and frame free.</param>
/// <param name="PageOutIntervalMs">When positive, shorthand for a random periodic page-out this often (<see cref="PageOutSchedules"/>).</param>
/// <param name="Seed">Seeds every random choice of the page-out schedules.</param>
/// <param name="PageOut">Forced page-outs while the guest runs (<see cref="PageOutDriver"/>).</param>
/// <param name="TraceLimit">Timeline events the measurements keep (over all threads); 0 records no timeline.</param>
/// <param name="Mmu">Which secondary MMU the vCPUs translate through (<c>--mmu</c>).</param>
/// <param name="Measure">
/// False: the host and the secondary MMU record nothing (no clock reads, no histograms),
/// only to measure what measuring costs (<c>make bench</c>, bench/RESULTS.md).
/// </param>
public sealed record GuestMemoryConfig(
    ulong HostMemoryBytes,
    string? SwapFilePath = null,
    ulong SwapBytes = 0,
    NotifierProtocol Protocol = NotifierProtocol.Sequence,
    bool Check = false,
    int PageOutIntervalMs = 0,
    int Seed = 1,
    long TraceLimit = 0,
    IReadOnlyList<PageOutSchedule>? PageOut = null,
    bool Measure = true,
    SecondaryMmuKind Mmu = SecondaryMmuKind.Ept)
{
    /// <summary><see cref="PageOut"/>, then <see cref="PageOutIntervalMs"/> as <c>every=MS,pick=random</c>.</summary>
    public IReadOnlyList<PageOutSchedule> PageOutSchedules() =>
        [.. PageOut ?? [], .. PageOutIntervalMs > 0
            ? [new PeriodicPageOut(TimeSpan.FromMilliseconds(PageOutIntervalMs), null, PageOutPick.Random)]
            : Array.Empty<PageOutSchedule>()];
}

/// <summary>
/// Guest RAM as the layers of docs/DESIGN.md build it (the VMM's composition
/// root for memory): a simulated host (frame pool, swap file, background
/// reclaimer), one host address space with one anonymous mapping for the RAM
/// and the chosen notifier protocol, the EPT-like secondary MMU subscribed to
/// its notifiers (the vCPUs' access side), the manager over both (the devices'
/// management side), the invariant checker and the measurement hub that all of
/// them record into.
/// </summary>
/// <remarks>
/// Life cycle: construct (starts the reclaimer and the page-out driver) -->
/// the VM runs on <see cref="Mmu"/> --> <see cref="Dispose"/> (stops the threads,
/// unsubscribes, tears the address space and the host down, deletes the swap file).
/// </remarks>
public sealed class HostBackedMemory : IDisposable
{
    private readonly HostReclaimerService? _reclaimer;   // null over a shared host (its own reclaimer runs there)
    private readonly SharedHost? _shared;
    private readonly CancellationTokenSource _stop = new();
    private readonly ILogger _logger;
    private int _disposed;

    public HostBackedMemory(ulong ramBytes, int vcpus, GuestMemoryConfig config, ILogger? logger = null)
        : this(ramBytes, vcpus, config, logger, null)
    {
    }

    /// <summary>
    /// Guest RAM of one of several VMs over <paramref name="shared"/>'s host: an address
    /// space, secondary MMU, manager, checker, hub and page-out driver of its own; the
    /// host, its reclaimer and its swap file stay <paramref name="shared"/>'s.
    /// </summary>
    /// <param name="vmIndex">The VM's number on the host (its grants and attachments are its own).</param>
    public HostBackedMemory(SharedHost shared, int vmIndex, ulong ramBytes, int vcpus, GuestMemoryConfig config, ILogger? logger = null)
        : this(ramBytes, vcpus, config, logger, shared ?? throw new ArgumentNullException(nameof(shared)), vmIndex)
    {
    }

    private HostBackedMemory(ulong ramBytes, int vcpus, GuestMemoryConfig config, ILogger? logger, SharedHost? shared, int vmIndex = 0)
    {
        _logger = logger ?? NullLogger.Instance;
        Config = config;
        _shared = shared;
        if (shared is null)
        {
            var options = new HostMemoryOptions
            {
                HostMemoryBytes = config.HostMemoryBytes,
                SwapFilePath = config.SwapFilePath,
                // Enough swap for all of guest RAM plus slack, unless given.
                SwapBytes = config.SwapBytes != 0 ? config.SwapBytes : ramBytes + (16UL << 20),
            };
            Host = new HostMemory(options);
        }
        else Host = shared.Host;
        try
        {
            Space = Host.CreateAddressSpace();
            Space.Notifiers.Protocol = NotifierProtocols.Of(config.Protocol);
            RamHva = Space.Map(ramBytes, HostProtection.ReadWrite);
            Measurements = new MeasurementHub(vcpus, config.TraceLimit);
            if (config.Measure && shared is null) Host.Events = Measurements;
            Binding = new SecondaryHostBinding(Space);
            var events = config.Measure ? Measurements : null;
            Mmu = config.Mmu == SecondaryMmuKind.Shadow
                ? new ShadowMmu(Binding, ramBytes, RamHva) { Events = events }
                : new EptMmu(Binding, ramBytes, RamHva) { Events = events };
            Management = new GuestMemoryManager(Binding, Mmu);
            // Grants: the vCPUs translate through the router, the devices act through the
            // grant-aware management; an attachment gets an MMU of the VM's own kind over the grant.
            SecondaryMmuFactory factory = config.Mmu == SecondaryMmuKind.Shadow
                ? (host, bytes, hva) => new ShadowMmu(host, bytes, hva) { Events = events, Checker = Checker }
                : (host, bytes, hva) => new EptMmu(host, bytes, hva) { Events = events, Checker = Checker };
            Grants = new GrantVm(shared?.Grants ?? new GrantTable(), vmIndex, Binding, Binding, Mmu, Management, RamHva, factory);
            var space = Space;
            Measurements.SetHostCounters(() => Host.FreeFrames, () => space.ResidentPages);
            if (config.Check)
            {
                Checker = new MmuInvariantChecker { Events = Measurements };
                ((SecondaryMmuCore)Mmu).Checker = Checker;
                if (shared is null) Host.FrameFreed = Checker.OnFrameFree;
                else shared.OnFrameFreed(Checker.OnFrameFree);
            }
            var measurements = Measurements;
            PageOutDriver = new PageOutDriver(Space, RamHva, ramBytes, Grants.Management, config.PageOutSchedules(), config.Seed, _logger)
            {
                ThreadStarted = () => measurements.BindCurrentThread("page-out driver"),
            };
            if (shared is null)
            {
                _reclaimer = new HostReclaimerService(Host);
                _reclaimer.StartAsync(_stop.Token).GetAwaiter().GetResult();
            }
            PageOutDriver.Start();
        }
        catch
        {
            Measurements?.Dispose();
            if (shared is null) Host.Dispose();
            else Space?.Dispose();
            throw;
        }
    }

    public GuestMemoryConfig Config { get; }
    public HostMemory Host { get; }
    public HostAddressSpace Space { get; }
    public Hva RamHva { get; }
    /// <summary>The address space as the secondary side sees it (what a grant of this VM's RAM faults through).</summary>
    public SecondaryHostBinding Binding { get; }
    /// <summary>The secondary MMU the vCPUs translate through: an <see cref="EptMmu"/> or a <see cref="ShadowMmu"/>.</summary>
    public ISecondaryMmu Mmu { get; }
    /// <summary>How the MMU's TLB shootdowns were completed so far.</summary>
    public ShootdownCounts Shootdowns => ((SecondaryMmuCore)Mmu).Shootdowns;
    /// <summary>Host frames the MMU's entries pin now (only under <c>--notifier-protocol pin</c>).</summary>
    public long PinnedFrames => ((SecondaryMmuCore)Mmu).PinnedFrames;
    /// <summary>The shadow MMU's counters, or null under EPT.</summary>
    public ShadowCounts? ShadowCounts => (Mmu as ShadowMmu)?.Counts;
    /// <summary>Slots and the PAGEOUT/DISCARD hypercalls, straight to the host address space.</summary>
    public GuestMemoryManager Management { get; }
    /// <summary>This VM as a party to grants: the router its vCPUs translate through, the grant-aware management.</summary>
    public GrantVm Grants { get; }
    /// <summary>Both sides, for <see cref="VirtualMachine.Create"/> (this object stays the owner).</summary>
    public VmMemory Memory => new(Grants.Router, Grants.Management, Grants: Grants);
    /// <summary>Every figure of the run (faults, invalidations, shootdowns, page-outs, phases, the timeline).</summary>
    public MeasurementHub Measurements { get; }

    /// <summary>The figures so far; exact once the vCPUs and <see cref="StopBackground"/> have stopped.</summary>
    public MeasurementSnapshot Snapshot() => Measurements.Snapshot();
    public MmuInvariantChecker? Checker { get; }

    /// <summary>Runs the page-out schedules (<see cref="GuestMemoryConfig.PageOutSchedules"/>) while the guest runs.</summary>
    public PageOutDriver PageOutDriver { get; }

    /// <summary>Pages the page-out schedules have paged out.</summary>
    public long PressurePages => PageOutDriver.PagesPagedOut;

    /// <summary>One line per part: where the time went.</summary>
    public IEnumerable<string> Summary()
    {
        var total = Snapshot().Total;
        var faults = LatencyScale.NewHistogram();
        foreach (var h in total.Faults.Values) faults.Add(h);
        var inv = LatencyScale.NewHistogram();
        foreach (var h in total.Invalidations.Values) inv.Add(h);
        string kinds = string.Join(", ", total.Faults.Select(k => $"{k.Key} {k.Value.TotalCount}"));
        yield return $"secondary faults: {faults.TotalCount} ({kinds}; p50 {P(faults, 50)} ns, p99 {P(faults, 99)} ns, max {Max(faults)} ns), retried {total.FaultRetries}";
        yield return $"invalidations: {inv.TotalCount} covering {total.InvalidatedPages.Values.Sum()} pages (p50 {P(inv, 50)} ns, p99 {P(inv, 99)} ns, max {Max(inv)} ns)";
        yield return $"TLB shootdowns: {Shootdowns}; pinned frames {PinnedFrames}";
        if (ShadowCounts is { } shadowCounts) yield return $"shadow MMU: {shadowCounts}";
        yield return $"host: {Host.FrameCount} frames, {Host.FreeFrames} free; {Host.Stats}";
        foreach (var line in PageOutDriver.Summary()) yield return line;
        if (Checker is not null) yield return $"checker: {Checker.Checks} events checked, {Checker.ViolationCount} violations";
    }

    private static long P(HdrHistogram.HistogramBase h, double percentile) => h.TotalCount == 0 ? 0 : h.GetValueAtPercentile(percentile);
    private static long Max(HdrHistogram.HistogramBase h) => h.TotalCount == 0 ? 0 : HdrHistogram.HistogramExtensions.GetMaxValue(h);

    /// <summary>Stop the page-out driver and the background reclaimer (the host is then quiescent once the vCPUs stop).</summary>
    public void StopBackground()
    {
        if (_stop.IsCancellationRequested) return;
        _stop.Cancel();
        PageOutDriver.Stop();
        if (_reclaimer is null) return;
        try { _reclaimer.StopAsync(CancellationToken.None).GetAwaiter().GetResult(); }
        catch (Exception ex) { _logger.LogDebug("reclaimer stopped with {Error}", ex.Message); }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        StopBackground();
        PageOutDriver.Dispose();
        // Its grants go and its attachments are detached before its address space does.
        Grants.Table.VmEnded(Grants);
        Measurements.EndRun();
        ((IDisposable)Mmu).Dispose();
        Space.Dispose();
        if (_shared is null) Host.Dispose();
        Measurements.Dispose();
        _stop.Dispose();
    }
}
