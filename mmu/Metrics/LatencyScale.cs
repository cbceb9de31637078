using System.Diagnostics;
using System.Runtime.CompilerServices;
using HdrHistogram;

namespace ToyVmm.Mmu.Metrics;

/// <summary>
/// The one histogram configuration of the hub: nanoseconds from 1 ns to 60 s at
/// 3 significant digits (HdrHistogram), so that histograms of any phase, thread
/// or run can be added together; and the tick-to-nanosecond conversion.
/// </summary>
public static class LatencyScale
{
    /// <summary>The highest value a histogram tracks; longer latencies are recorded as this.</summary>
    public const long HighestTrackableNs = 60_000_000_000;
    public const int SignificantDigits = 3;

    private static readonly bool s_ticksAreNs = Stopwatch.Frequency == 1_000_000_000;
    private static readonly double s_nsPerTick = 1e9 / Stopwatch.Frequency;

    /// <summary>An empty histogram of the hub's configuration.</summary>
    public static HistogramBase NewHistogram() => new LongHistogram(HighestTrackableNs, SignificantDigits);

    /// <summary>
    /// An empty histogram of the hub's configuration that tracks values up to <paramref name="highestNs"/>
    /// only: the same buckets over a shorter range, so it adds into a full one exactly, at a fraction
    /// of the memory (the whole range takes 221 KiB).
    /// </summary>
    public static HistogramBase NewHistogram(long highestNs) =>
        new LongHistogram(Math.Clamp(highestNs, 2, HighestTrackableNs), SignificantDigits);

    /// <summary>Nanoseconds of a <see cref="Stopwatch"/> tick span, clamped to [0, <see cref="HighestTrackableNs"/>].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long TicksToNs(long ticks)
    {
        long ns = s_ticksAreNs ? ticks : (long)(ticks * s_nsPerTick);
        return ns < 0 ? 0 : ns > HighestTrackableNs ? HighestTrackableNs : ns;
    }

    /// <summary>Seconds of a <see cref="Stopwatch"/> tick span.</summary>
    public static double TicksToSeconds(long ticks) => (double)ticks / Stopwatch.Frequency;

    /// <summary>Record into lazily created counts (the first record of a kind in a phase allocates them).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Record(ref LatencyCounts? counts, long ns)
    {
        var c = counts ?? Create(ref counts);
        c.Record(ns);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static LatencyCounts Create(ref LatencyCounts? counts)
    {
        var c = new LatencyCounts();
        Volatile.Write(ref counts, c);   // published whole: a snapshot never sees a half-built array
        return c;
    }
}
