using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Vm;

/// <summary>How guest RAM is backed.</summary>
/// <param name="HostMemoryBytes">The host frame pool; guest RAM may be many times larger.</param>
/// <param name="SwapFilePath">The swap file; null for a temporary file deleted at exit.</param>
/// <param name="SwapBytes">Size of the swap file.</param>
/// <param name="Protocol">The fault/invalidate protocol (broken-2008 only to watch the checker catch the race).</param>
/// <param name="Check">Run the invariant checker at every install, TLB fill and frame free.</param>
/// <param name="PageOutIntervalMs">When positive, a pressure thread pages a random range of guest RAM out this often.</param>
/// <param name="TraceLimit">Timeline events the measurements keep (over all threads); 0 records no timeline.</param>
public sealed record GuestMemoryConfig(
    ulong HostMemoryBytes,
    string? SwapFilePath = null,
    ulong SwapBytes = 0,
    NotifierProtocol Protocol = NotifierProtocol.Sequence,
    bool Check = false,
    int PageOutIntervalMs = 0,
    int Seed = 1,
    long TraceLimit = 0);

/// <summary>
/// Guest RAM as the DESIGN.md stack builds it: a simulated host (frame pool,
/// swap file, background reclaimer), one host address space with one anonymous
/// mapping for the RAM, the EPT-like secondary MMU subscribed to its notifiers,
/// the invariant checker and the measurement hub that all of them record into.
/// </summary>
/// <remarks>
/// Life cycle: construct (starts the reclaimer and the pressure thread) -->
/// the VM runs on <see cref="Mmu"/> --> <see cref="Dispose"/> (stops the threads,
/// unsubscribes, tears the address space and the host down, deletes the swap file).
/// </remarks>
public sealed class HostBackedMemory : IDisposable
{
    private readonly HostReclaimerService _reclaimer;
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread? _pressure;
    private readonly ILogger _logger;
    private long _pressurePages;
    private int _disposed;

    public HostBackedMemory(ulong ramBytes, int vcpus, GuestMemoryConfig config, ILogger? logger = null)
    {
        _logger = logger ?? NullLogger.Instance;
        Config = config;
        var options = new HostMemoryOptions
        {
            HostMemoryBytes = config.HostMemoryBytes,
            SwapFilePath = config.SwapFilePath,
            // Enough swap for all of guest RAM plus slack, unless given.
            SwapBytes = config.SwapBytes != 0 ? config.SwapBytes : ramBytes + (16UL << 20),
        };
        Host = new HostMemory(options);
        try
        {
            Space = Host.CreateAddressSpace();
            Space.Broken2008Notifiers = config.Protocol == NotifierProtocol.Broken2008;
            RamHva = Space.Map(ramBytes, HostProtection.ReadWrite);
            Measurements = new MeasurementHub(vcpus, config.TraceLimit);
            Host.Events = Measurements;
            Mmu = new EptMmu(new SecondaryHostBinding(Space), ramBytes, RamHva, config.Protocol) { Events = Measurements };
            var space = Space;
            Measurements.SetHostCounters(() => Host.FreeFrames, () => space.ResidentPages);
            if (config.Check)
            {
                Checker = new MmuInvariantChecker { Events = Measurements };
                Mmu.Checker = Checker;
                Host.FrameFreed = Checker.OnFrameFree;
            }
            _reclaimer = new HostReclaimerService(Host);
            _reclaimer.StartAsync(_stop.Token).GetAwaiter().GetResult();
            if (config.PageOutIntervalMs > 0)
            {
                _pressure = new Thread(() => Pressure(ramBytes)) { IsBackground = true, Name = "toyvmm-pageout" };
                _pressure.Start();
            }
        }
        catch
        {
            Measurements?.Dispose();
            Host.Dispose();
            throw;
        }
    }

    public GuestMemoryConfig Config { get; }
    public HostMemory Host { get; }
    public HostAddressSpace Space { get; }
    public Hva RamHva { get; }
    public EptMmu Mmu { get; }
    /// <summary>Every figure of the run (faults, invalidations, shootdowns, page-outs, phases, the timeline).</summary>
    public MeasurementHub Measurements { get; }

    /// <summary>The figures so far; exact once the vCPUs and <see cref="StopBackground"/> have stopped.</summary>
    public MeasurementSnapshot Snapshot() => Measurements.Snapshot();
    public MmuInvariantChecker? Checker { get; }

    /// <summary>Pages the pressure thread has paged out.</summary>
    public long PressurePages => Volatile.Read(ref _pressurePages);

    /// <summary>Forced page-outs while the guest runs: a random 1..64-page range every interval.</summary>
    private void Pressure(ulong ramBytes)
    {
        var rng = new Random(Config.Seed);
        ulong pages = ramBytes >> Page.Shift;
        while (!_stop.Token.WaitHandle.WaitOne(Config.PageOutIntervalMs))
        {
            ulong count = (ulong)rng.Next(1, 65);
            ulong first = (ulong)rng.NextInt64(0, (long)Math.Max(1, pages - count));
            long done = Mmu.PageOut(Gpa.FromPageNumber(first), count << Page.Shift);
            if (done > 0) Interlocked.Add(ref _pressurePages, done);
        }
    }

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
        yield return $"TLB shootdowns: {Mmu.Shootdowns}";
        yield return $"host: {Host.FrameCount} frames, {Host.FreeFrames} free; {Host.Stats}";
        if (_pressure is not null) yield return $"forced page-outs: {PressurePages} pages";
        if (Checker is not null) yield return $"checker: {Checker.Checks} events checked, {Checker.ViolationCount} violations";
    }

    private static long P(HdrHistogram.HistogramBase h, double percentile) => h.TotalCount == 0 ? 0 : h.GetValueAtPercentile(percentile);
    private static long Max(HdrHistogram.HistogramBase h) => h.TotalCount == 0 ? 0 : HdrHistogram.HistogramExtensions.GetMaxValue(h);

    /// <summary>Stop the pressure thread and the background reclaimer (the host is then quiescent once the vCPUs stop).</summary>
    public void StopBackground()
    {
        if (_stop.IsCancellationRequested) return;
        _stop.Cancel();
        _pressure?.Join();
        try { _reclaimer.StopAsync(CancellationToken.None).GetAwaiter().GetResult(); }
        catch (Exception ex) { _logger.LogDebug("reclaimer stopped with {Error}", ex.Message); }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        StopBackground();
        Measurements.EndRun();
        Mmu.Dispose();
        Space.Dispose();
        Host.Dispose();
        Measurements.Dispose();
        _stop.Dispose();
    }
}
