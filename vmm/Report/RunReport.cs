using HdrHistogram;
using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Report;

/// <summary>
/// The JSON report of one run (<c>--report PATH</c>): every figure of the
/// measurement snapshot with the run's facts, field by field as README
/// "Reports, traces and plots" documents. Build it with <see cref="Build"/>,
/// write it with <see cref="ReportWriter.Write"/>.
/// </summary>
public sealed record RunReport
{
    /// <summary>Bumped when a field changes meaning or goes away (adding fields does not).</summary>
    public const int CurrentSchemaVersion = 1;

    public required int SchemaVersion { get; init; }
    public required int ExitStatus { get; init; }
    public string? Outcome { get; init; }
    public required string Guest { get; init; }
    public required int Vcpus { get; init; }
    public required long Instructions { get; init; }
    public required double WallSeconds { get; init; }
    /// <summary>Millions of guest instructions per wall second, over every vCPU.</summary>
    public required double Mips { get; init; }
    /// <summary>Every option as used, in a stable order.</summary>
    public required IReadOnlyDictionary<string, string> Settings { get; init; }
    public required FaultsSection Faults { get; init; }
    public required InvalidationsSection Invalidations { get; init; }
    public required ShootdownSection Shootdown { get; init; }
    public required SwapSection Swap { get; init; }
    public HostSection? Host { get; init; }
    public required CheckerSection Checker { get; init; }
    /// <summary>The shadow MMU's counters by name (<c>--mmu shadow</c> only).</summary>
    public IReadOnlyDictionary<string, long>? Shadow { get; init; }
    public TraceSection? Trace { get; init; }
    public required IReadOnlyList<PhaseReport> Phases { get; init; }
    /// <summary>The whole run's histograms in HdrHistogram's encoded form (<see cref="HistogramCodec"/>), by name.</summary>
    public required IReadOnlyDictionary<string, string> Histograms { get; init; }
    /// <summary>With several VMs on one host: each VM's own report (its number in <see cref="Vm"/>, no host section); null for one VM.</summary>
    public IReadOnlyList<RunReport>? Vms { get; init; }
    /// <summary>In an entry of <see cref="Vms"/>: the VM's number (0, 1, ...); null at the top.</summary>
    public int? Vm { get; init; }

    /// <summary>The report of a run from what the measurement hub measured and what the run knows.</summary>
    public static RunReport Build(MeasurementSnapshot snapshot, RunFacts facts)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        ArgumentNullException.ThrowIfNull(facts);
        var total = snapshot.Total;
        return new RunReport
        {
            SchemaVersion = CurrentSchemaVersion,
            ExitStatus = facts.ExitStatus,
            Outcome = facts.Outcome,
            Guest = facts.GuestPath,
            Vcpus = facts.Vcpus,
            Instructions = facts.Instructions,
            WallSeconds = Math.Round(facts.WallSeconds, 6),
            Mips = MipsOf(facts.Instructions, facts.WallSeconds),
            Settings = Ordered(facts.Settings),
            Faults = FaultsOf(total),
            Invalidations = InvalidationsOf(total),
            Shootdown = ShootdownOf(snapshot),
            Swap = new SwapSection
            {
                PageOutBatches = HistogramOps.Figures(total.PageOutBatches),
                PagesPagedOut = total.PagesPagedOut,
                Reads = HistogramOps.Figures(total.SwapReads),
            },
            Host = facts.Host is { } h ? new HostSection
            {
                FramesTotal = h.FramesTotal, FramesFree = h.FramesFree, PageOuts = h.PageOuts, SwapIns = h.SwapIns,
                SwapCacheHits = h.SwapCacheHits, ZeroFills = h.ZeroFills, WriteErrors = h.WriteErrors,
                ReadErrors = h.ReadErrors, ChecksumErrors = h.ChecksumErrors, Other = Ordered(h.Other),
            } : null,
            Shadow = facts.Shadow is { } shadow ? Ordered(shadow) : null,
            Checker = new CheckerSection
            {
                Enabled = facts.Checker.Enabled, Violations = facts.Checker.Violations, FirstViolation = facts.Checker.FirstViolation,
            },
            Trace = snapshot.Trace is { } t ? new TraceSection
            {
                Events = t.Events.Count, DroppedEvents = t.DroppedEvents, CounterSamples = t.Counters.Count,
            } : null,
            Phases = [.. snapshot.Phases.Select(p => new PhaseReport
            {
                Name = p.Name,
                Instructions = p.Instructions,
                WallSeconds = Math.Round(p.WallSeconds, 6),
                Mips = MipsOf(p.Instructions, p.WallSeconds),
                Faults = FaultsOf(p),
                Invalidations = InvalidationsOf(p),
            })],
            Histograms = EncodedHistograms(snapshot),
        };
    }

    /// <summary>Millions of instructions per second, 0 for an empty interval.</summary>
    public static double MipsOf(long instructions, double seconds) =>
        seconds > 0 ? Math.Round(instructions / seconds / 1e6, 3) : 0;

    /// <summary>The names under <c>histograms</c>, in report order, with the histogram each one encodes.</summary>
    public static IEnumerable<(string Name, HistogramBase Histogram)> NamedHistograms(MeasurementSnapshot snapshot)
    {
        var total = snapshot.Total;
        foreach (var kind in Enum.GetValues<FaultKind>())
            yield return ($"faults.{ReportNames.Of(kind)}", HistogramOps.Of(total.Faults, kind));
        foreach (var cause in Enum.GetValues<InvalidateCause>())
            yield return ($"invalidations.{ReportNames.Of(cause)}", HistogramOps.Of(total.Invalidations, cause));
        foreach (var step in Enum.GetValues<ShootdownStep>())
            yield return ($"shootdown.{ReportNames.Of(step)}", HistogramOps.Of(total.ShootdownWaits, step));
        yield return ("swap.pageOutBatches", total.PageOutBatches);
        yield return ("swap.reads", total.SwapReads);
    }

    private static Dictionary<string, string> EncodedHistograms(MeasurementSnapshot snapshot)
    {
        var encoded = new Dictionary<string, string>();
        foreach (var (name, h) in NamedHistograms(snapshot)) encoded.Add(name, HistogramCodec.Encode(h));
        return encoded;
    }

    private static FaultsSection FaultsOf(PhaseFigures p)
    {
        LatencyFigures Of(FaultKind k) => HistogramOps.Figures(HistogramOps.Of(p.Faults, k));
        var present = Of(FaultKind.Present);
        var zeroFill = Of(FaultKind.ZeroFill);
        var swapCacheHit = Of(FaultKind.SwapCacheHit);
        var swapIn = Of(FaultKind.SwapIn);
        return new FaultsSection
        {
            Count = present.Count + zeroFill.Count + swapCacheHit.Count + swapIn.Count,
            Present = present, ZeroFill = zeroFill, SwapCacheHit = swapCacheHit, SwapIn = swapIn,
            Retries = p.FaultRetries,
        };
    }

    private static InvalidationFigures InvalidationOf(PhaseFigures p, InvalidateCause cause)
    {
        var f = HistogramOps.Figures(HistogramOps.Of(p.Invalidations, cause));
        return new InvalidationFigures
        {
            Count = f.Count, Pages = p.InvalidatedPages.GetValueOrDefault(cause),
            P50Ns = f.P50Ns, P90Ns = f.P90Ns, P99Ns = f.P99Ns, P999Ns = f.P999Ns, MaxNs = f.MaxNs, MeanNs = f.MeanNs,
        };
    }

    private static InvalidationsSection InvalidationsOf(PhaseFigures p)
    {
        var all = HistogramOps.Figures(HistogramOps.Merge(p.Invalidations.Values));
        return new InvalidationsSection
        {
            Count = all.Count,
            Pages = p.InvalidatedPages.Values.Sum(),
            P50Ns = all.P50Ns, P90Ns = all.P90Ns, P99Ns = all.P99Ns, P999Ns = all.P999Ns, MaxNs = all.MaxNs, MeanNs = all.MeanNs,
            ByEvent = new InvalidationsByEvent
            {
                Reclaim = InvalidationOf(p, InvalidateCause.Reclaim),
                PageOut = InvalidationOf(p, InvalidateCause.PageOut),
                Discard = InvalidationOf(p, InvalidateCause.Discard),
                Unmap = InvalidationOf(p, InvalidateCause.Unmap),
                Protect = InvalidationOf(p, InvalidateCause.Protect),
                Teardown = InvalidationOf(p, InvalidateCause.Teardown),
            },
        };
    }

    private static ShootdownSection ShootdownOf(MeasurementSnapshot s)
    {
        var waits = HistogramOps.Figures(HistogramOps.Merge(s.Total.ShootdownWaits.Values));
        long Count(ShootdownStep step) => s.ShootdownCounts.GetValueOrDefault(step);
        return new ShootdownSection
        {
            Count = s.ShootdownCounts.Values.Sum(),
            P50Ns = waits.P50Ns, P99Ns = waits.P99Ns, MaxNs = waits.MaxNs,
            NeverHeld = Count(ShootdownStep.NeverHeld),
            Acknowledged = Count(ShootdownStep.Acknowledged),
            ShotDown = Count(ShootdownStep.ShotDown),
            Waited = Count(ShootdownStep.Waited),
        };
    }

    // A Dictionary enumerates in insertion order while nothing is removed, which the
    // serializer keeps: the settings appear in the order the run listed them.
    private static Dictionary<string, TValue> Ordered<TValue>(IEnumerable<KeyValuePair<string, TValue>> pairs)
    {
        var d = new Dictionary<string, TValue>();
        foreach (var (k, v) in pairs) d[k] = v;
        return d;
    }
}
