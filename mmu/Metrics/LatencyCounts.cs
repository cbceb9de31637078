using System.Numerics;
using System.Runtime.CompilerServices;
using HdrHistogram;

namespace ToyVmm.Mmu.Metrics;

/// <summary>
/// One writer's latency counts, laid out exactly as the counts of a
/// <see cref="LatencyScale.NewHistogram"/> HdrHistogram (1 ns to 60 s, 3 significant
/// digits: 2048 sub-buckets, the top half of each power of two at its own scale), so
/// that <see cref="AddTo"/> hands them to a histogram without losing anything.
/// </summary>
/// <remarks>
/// Why not record into the HdrHistogram directly: its RecordValue goes through
/// several virtual calls, a software leading-zero count and min/max bookkeeping;
/// this is one <c>lzcnt</c>, two shifts and an increment on the fault path
/// (<c>SecondaryFaultBenchmarks</c>, <c>Measuring=Report</c>). Written by one thread;
/// read racily (whole 64-bit counts) by snapshots and the meter.
/// </remarks>
internal sealed class LatencyCounts
{
    private const int SubBucketHalfCountMagnitude = 10;                 // 2048 sub-buckets for 3 digits
    private const int SubBucketHalfCount = 1 << SubBucketHalfCountMagnitude;
    private const long SubBucketMask = 2 * SubBucketHalfCount - 1;
    private const int LeadingZeroCountBase = 64 - SubBucketHalfCountMagnitude - 1;   // unit magnitude 0 (1 ns)

    /// <summary>Counts up to the highest trackable value's (values are clamped to it before they come here).</summary>
    internal static readonly int Length = IndexOf(LatencyScale.HighestTrackableNs) + 1;

    private readonly long[] _counts = new long[Length];
    private long _total;

    public long TotalCount => Volatile.Read(ref _total);

    /// <summary>Count <paramref name="ns"/>, already clamped to [0, <see cref="LatencyScale.HighestTrackableNs"/>].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Record(long ns)
    {
        _counts[IndexOf(ns)]++;
        Volatile.Write(ref _total, _total + 1);
    }

    /// <summary>HdrHistogram's counts index of a value (GetBucketIndex, GetSubBucketIndex, CountsArrayIndex).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int IndexOf(long value)
    {
        int bucket = LeadingZeroCountBase - BitOperations.LeadingZeroCount((ulong)(value | SubBucketMask));
        int sub = (int)(value >> bucket);
        return ((bucket + 1) << SubBucketHalfCountMagnitude) + (sub - SubBucketHalfCount);
    }

    /// <summary>The lowest value that lands at <paramref name="index"/>.</summary>
    internal static long ValueAt(int index)
    {
        int bucket = (index >> SubBucketHalfCountMagnitude) - 1;
        int sub = (index & (SubBucketHalfCount - 1)) + SubBucketHalfCount;
        if (bucket < 0)
        {
            sub -= SubBucketHalfCount;
            bucket = 0;
        }
        return (long)sub << bucket;
    }

    /// <summary>Add every count to <paramref name="histogram"/> (of the hub's configuration).</summary>
    public void AddTo(HistogramBase histogram)
    {
        var counts = _counts;
        for (int i = 0; i < counts.Length; i++)
        {
            long n = Volatile.Read(ref counts[i]);
            if (n != 0) histogram.RecordValueWithCount(ValueAt(i), n);
        }
    }
}
