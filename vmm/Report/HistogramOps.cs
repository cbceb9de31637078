using HdrHistogram;

namespace ToyVmm.Report;

/// <summary>Merging histograms and reading their figures for the report, the table and the plots.</summary>
public static class HistogramOps
{
    /// <summary>An empty histogram for a kind the run never recorded (1 ns to 1 hour, 3 digits).</summary>
    public static HistogramBase Empty() => new LongHistogram(1, 3_600_000_000_000L, 3);

    /// <summary>
    /// Every histogram's counts in one new histogram wide enough for all of them
    /// (the inputs are left alone).
    /// </summary>
    public static HistogramBase Merge(IEnumerable<HistogramBase> histograms)
    {
        var all = histograms.ToList();
        if (all.Count == 0) return Empty();
        long highest = all.Max(h => h.HighestTrackableValue);
        long lowest = all.Min(h => h.LowestTrackableValue);
        int digits = all.Max(h => h.NumberOfSignificantValueDigits);
        var merged = new LongHistogram(Math.Max(1, lowest), Math.Max(highest, 2 * Math.Max(1, lowest)), digits);
        foreach (var h in all) merged.Add(h);
        return merged;
    }

    /// <summary>
    /// Count and percentiles (each the highest value equivalent to the recorded ones at
    /// the histogram's precision); p50 ≤ p90 ≤ p99 ≤ p99.9 ≤ max always holds.
    /// </summary>
    public static LatencyFigures Figures(HistogramBase h)
    {
        if (h.TotalCount == 0) return LatencyFigures.Empty;
        long max = h.GetMaxValue();
        long p50 = Math.Min(h.GetValueAtPercentile(50), max);
        long p90 = Math.Clamp(h.GetValueAtPercentile(90), p50, max);
        long p99 = Math.Clamp(h.GetValueAtPercentile(99), p90, max);
        long p999 = Math.Clamp(h.GetValueAtPercentile(99.9), p99, max);
        return new LatencyFigures
        {
            Count = h.TotalCount, P50Ns = p50, P90Ns = p90, P99Ns = p99, P999Ns = p999, MaxNs = max,
            MeanNs = Math.Round(h.GetMean(), 1),
        };
    }

    /// <summary>The histogram of <paramref name="key"/>, or an empty one when the run never recorded it.</summary>
    public static HistogramBase Of<TKey>(IReadOnlyDictionary<TKey, HistogramBase> byKey, TKey key) where TKey : notnull =>
        byKey.TryGetValue(key, out var h) ? h : Empty();
}
