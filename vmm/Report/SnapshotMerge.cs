using HdrHistogram;
using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Report;

/// <summary>
/// Several measurement snapshots as one (several VMs of one host, and the host's own):
/// histograms added, counts summed, phases matched by name in the order they first
/// appear. The merged snapshot has no timeline (each VM's is written apart).
/// </summary>
public static class SnapshotMerge
{
    public static MeasurementSnapshot Merge(IReadOnlyList<MeasurementSnapshot> snapshots)
    {
        ArgumentNullException.ThrowIfNull(snapshots);
        var names = new List<string>();
        foreach (var s in snapshots)
            foreach (var p in s.Phases)
                if (!names.Contains(p.Name)) names.Add(p.Name);
        var phases = names.Select(n => Merge(n, snapshots.SelectMany(s => s.Phases.Where(p => p.Name == n)).ToList())).ToList();
        var counts = new Dictionary<ShootdownStep, long>();
        foreach (var s in snapshots)
            foreach (var (step, n) in s.ShootdownCounts)
                counts[step] = counts.GetValueOrDefault(step) + n;
        return new MeasurementSnapshot
        {
            Phases = phases,
            Total = Merge(snapshots.Count == 0 ? "total" : snapshots[0].Total.Name, [.. snapshots.Select(s => s.Total)]),
            ShootdownCounts = counts,
        };
    }

    private static PhaseFigures Merge(string name, IReadOnlyList<PhaseFigures> parts) => new()
    {
        Name = name,
        // Several VMs' phases of one name run side by side: instructions add, wall time is the longest.
        Instructions = parts.Sum(p => p.Instructions),
        WallSeconds = parts.Count == 0 ? 0 : parts.Max(p => p.WallSeconds),
        Faults = ByKey(parts.Select(p => p.Faults)),
        FaultRetries = parts.Sum(p => p.FaultRetries),
        Invalidations = ByKey(parts.Select(p => p.Invalidations)),
        InvalidatedPages = parts.SelectMany(p => p.InvalidatedPages).GroupBy(kv => kv.Key).ToDictionary(g => g.Key, g => g.Sum(kv => kv.Value)),
        ShootdownWaits = ByKey(parts.Select(p => p.ShootdownWaits)),
        PageOutBatches = Sum(parts.Select(p => p.PageOutBatches)),
        PagesPagedOut = parts.Sum(p => p.PagesPagedOut),
        SwapReads = Sum(parts.Select(p => p.SwapReads)),
    };

    private static Dictionary<TKey, HistogramBase> ByKey<TKey>(IEnumerable<IReadOnlyDictionary<TKey, HistogramBase>> maps) where TKey : notnull
    {
        var merged = new Dictionary<TKey, HistogramBase>();
        foreach (var map in maps)
            foreach (var (key, h) in map)
            {
                if (!merged.TryGetValue(key, out var into)) merged[key] = into = LatencyScale.NewHistogram();
                into.Add(h);
            }
        return merged;
    }

    private static HistogramBase Sum(IEnumerable<HistogramBase> histograms)
    {
        var sum = LatencyScale.NewHistogram();
        foreach (var h in histograms) sum.Add(h);
        return sum;
    }
}
