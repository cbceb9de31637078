using HdrHistogram;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Report;

namespace ToyVmm.Tests.Report;

/// <summary>
/// Measurement snapshots with known contents, as the hub would hand them over:
/// two phases (<c>boot</c>: zero-fill faults; <c>work</c>: every kind), and the total
/// as their merge.
/// </summary>
internal static class SyntheticSnapshots
{
    public static HistogramBase Hist(params long[] valuesNs)
    {
        var h = new LongHistogram(1, 3_600_000_000_000L, 3);
        foreach (var v in valuesNs) h.RecordValue(v);
        return h;
    }

    /// <summary><paramref name="count"/> values spread from <paramref name="from"/> to <paramref name="to"/> ns.</summary>
    public static HistogramBase Spread(int count, long from, long to)
    {
        var h = new LongHistogram(1, 3_600_000_000_000L, 3);
        for (int i = 0; i < count; i++) h.RecordValue(from + (to - from) * i / Math.Max(1, count - 1));
        return h;
    }

    public static PhaseFigures Boot() => new()
    {
        Name = "boot",
        Instructions = 2_000_000,
        WallSeconds = 0.5,
        Faults = new Dictionary<FaultKind, HistogramBase>
        {
            [FaultKind.ZeroFill] = Spread(100, 800, 5_000),
            [FaultKind.Present] = Hist(150, 160, 170),
        },
        FaultRetries = 1,
        Invalidations = new Dictionary<InvalidateCause, HistogramBase> { [InvalidateCause.Unmap] = Hist(2_000, 3_000) },
        InvalidatedPages = new Dictionary<InvalidateCause, long> { [InvalidateCause.Unmap] = 16 },
        ShootdownWaits = new Dictionary<ShootdownStep, HistogramBase> { [ShootdownStep.NeverHeld] = Hist(40, 50) },
        PageOutBatches = Hist(),
        PagesPagedOut = 0,
        SwapReads = Hist(),
    };

    public static PhaseFigures Work() => new()
    {
        Name = "work",
        Instructions = 30_000_000,
        WallSeconds = 2.5,
        Faults = new Dictionary<FaultKind, HistogramBase>
        {
            [FaultKind.Present] = Spread(1000, 100, 2_000),
            [FaultKind.ZeroFill] = Spread(10, 900, 4_000),
            [FaultKind.SwapCacheHit] = Spread(50, 1_000, 9_000),
            [FaultKind.SwapIn] = Spread(200, 20_000, 3_000_000),
        },
        FaultRetries = 7,
        Invalidations = new Dictionary<InvalidateCause, HistogramBase>
        {
            [InvalidateCause.Reclaim] = Spread(300, 1_000, 80_000),
            [InvalidateCause.PageOut] = Spread(120, 2_000, 400_000),
            [InvalidateCause.Discard] = Hist(5_000),
        },
        InvalidatedPages = new Dictionary<InvalidateCause, long>
        {
            [InvalidateCause.Reclaim] = 9_600, [InvalidateCause.PageOut] = 7_680, [InvalidateCause.Discard] = 4,
        },
        ShootdownWaits = new Dictionary<ShootdownStep, HistogramBase>
        {
            [ShootdownStep.NeverHeld] = Spread(400, 30, 90),
            [ShootdownStep.Acknowledged] = Spread(100, 200, 3_000),
            [ShootdownStep.Waited] = Spread(5, 10_000, 200_000),
        },
        PageOutBatches = Spread(120, 50_000, 2_000_000),
        PagesPagedOut = 7_680,
        SwapReads = Spread(200, 15_000, 2_500_000),
    };

    /// <summary>Every phase's figures merged, as the hub's <c>Total</c>.</summary>
    public static PhaseFigures TotalOf(IReadOnlyList<PhaseFigures> phases)
    {
        Dictionary<TKey, HistogramBase> MergeBy<TKey>(Func<PhaseFigures, IReadOnlyDictionary<TKey, HistogramBase>> pick) where TKey : struct, Enum =>
            Enum.GetValues<TKey>()
                .Where(k => phases.Any(p => pick(p).ContainsKey(k)))
                .ToDictionary(k => k, k => HistogramOps.Merge(phases.Where(p => pick(p).ContainsKey(k)).Select(p => pick(p)[k])));
        return new PhaseFigures
        {
            Name = "total",
            Instructions = phases.Sum(p => p.Instructions),
            WallSeconds = phases.Sum(p => p.WallSeconds),
            Faults = MergeBy(p => p.Faults),
            FaultRetries = phases.Sum(p => p.FaultRetries),
            Invalidations = MergeBy(p => p.Invalidations),
            InvalidatedPages = Enum.GetValues<InvalidateCause>()
                .ToDictionary(c => c, c => phases.Sum(p => p.InvalidatedPages.GetValueOrDefault(c))),
            ShootdownWaits = MergeBy(p => p.ShootdownWaits),
            PageOutBatches = HistogramOps.Merge(phases.Select(p => p.PageOutBatches)),
            PagesPagedOut = phases.Sum(p => p.PagesPagedOut),
            SwapReads = HistogramOps.Merge(phases.Select(p => p.SwapReads)),
        };
    }

    public static MeasurementSnapshot TwoPhases(TraceData? trace = null)
    {
        PhaseFigures[] phases = [Boot(), Work()];
        return new MeasurementSnapshot
        {
            Phases = phases,
            Total = TotalOf(phases),
            // Flushes that did not wait are counted here but not timed: more than the histograms hold.
            ShootdownCounts = new Dictionary<ShootdownStep, long>
            {
                [ShootdownStep.NeverHeld] = 900, [ShootdownStep.Acknowledged] = 100,
                [ShootdownStep.ShotDown] = 3, [ShootdownStep.Waited] = 5,
            },
            Trace = trace,
        };
    }

    /// <summary>A run that recorded nothing at all (one phase, every histogram empty).</summary>
    public static MeasurementSnapshot Empty()
    {
        var boot = new PhaseFigures
        {
            Name = "boot",
            Faults = new Dictionary<FaultKind, HistogramBase>(),
            Invalidations = new Dictionary<InvalidateCause, HistogramBase>(),
            InvalidatedPages = new Dictionary<InvalidateCause, long>(),
            ShootdownWaits = new Dictionary<ShootdownStep, HistogramBase>(),
            PageOutBatches = Hist(),
            SwapReads = Hist(),
        };
        return new MeasurementSnapshot { Phases = [boot], Total = boot, ShootdownCounts = new Dictionary<ShootdownStep, long>() };
    }

    public static RunFacts Facts(bool host = true) => new()
    {
        ExitStatus = 0,
        Outcome = "AllHalted",
        GuestPath = "guest/build/memhot.elf",
        Vcpus = 2,
        Instructions = 32_000_000,
        WallSeconds = 3.0,
        Settings =
        [
            new("memory", "64M"), new("vcpus", "2"), new("host-memory", "16M"),
            new("pageout", "every=5ms,pages=64,pick=random"), new("check", "true"), new("seed", "42"),
        ],
        Host = host ? new HostCounters
        {
            FramesTotal = 4096, FramesFree = 1200, PageOuts = 7_680, SwapIns = 200, SwapCacheHits = 50,
            ZeroFills = 110, Other = [new("shadowSyncs", 12)],
        } : null,
        Checker = new CheckerFacts(true, 0),
        Shadow = host ? [new("writeProtectTraps", 12), new("rootsCached", 3)] : null,
    };
}
