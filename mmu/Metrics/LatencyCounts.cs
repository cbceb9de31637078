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
/// <para>
/// The counts are kept in blocks of 1,024 (8 KiB, one power of two of values above 2 us),
/// made at a block's first record: the whole range, 1 ns to 60 s, is 27 blocks (221 KiB),
/// of which a kind of latency touches a handful. One set of counts is kept per recording
/// thread, kind and phase, and a guest may declare up to a thousand phases, so the whole
/// range made at once cost a guest's VMM gigabytes, and a 221 KiB large-object allocation in
/// the middle of the first fault of each kind.
/// </para>
/// </remarks>
internal sealed class LatencyCounts
{
    private const int SubBucketHalfCountMagnitude = 10;                 // 2048 sub-buckets for 3 digits
    private const int SubBucketHalfCount = 1 << SubBucketHalfCountMagnitude;
    private const long SubBucketMask = 2 * SubBucketHalfCount - 1;
    private const int LeadingZeroCountBase = 64 - SubBucketHalfCountMagnitude - 1;   // unit magnitude 0 (1 ns)

    /// <summary>Counts up to the highest trackable value's (values are clamped to it before they come here).</summary>
    internal static readonly int Length = IndexOf(LatencyScale.HighestTrackableNs) + 1;

    private const int BlockShift = SubBucketHalfCountMagnitude, BlockSize = 1 << BlockShift;

    private readonly long[]?[] _blocks = new long[]?[(Length + BlockSize - 1) >> BlockShift];   // written by the recording thread only, read racily
    private long _total;

    public long TotalCount => Volatile.Read(ref _total);

    /// <summary>Count <paramref name="ns"/>, already clamped to [0, <see cref="LatencyScale.HighestTrackableNs"/>].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Record(long ns)
    {
        int i = IndexOf(ns);
        var block = _blocks[i >> BlockShift] ?? NewBlock(i >> BlockShift);
        block[i & (BlockSize - 1)]++;
        Volatile.Write(ref _total, _total + 1);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private long[] NewBlock(int b)
    {
        var block = new long[BlockSize];
        Volatile.Write(ref _blocks[b], block);   // published whole: a snapshot never sees a half-made block
        return block;
    }

    /// <summary>
    /// The highest value the counts can hold so far: the top of the highest block made (block b
    /// holds values below <see cref="BlockSize"/> &lt;&lt; b), 0 with none. A histogram up to it takes every count.
    /// </summary>
    internal long HighestHeld
    {
        get
        {
            for (int b = _blocks.Length - 1; b >= 0; b--)
                if (Volatile.Read(ref _blocks[b]) is not null) return Math.Min(LatencyScale.HighestTrackableNs, ((long)BlockSize << b) - 1);
            return 0;
        }
    }

    /// <summary>Blocks of counts made so far (8 KiB each).</summary>
    internal int Blocks
    {
        get
        {
            int n = 0;
            for (int b = 0; b < _blocks.Length; b++)
                if (Volatile.Read(ref _blocks[b]) is not null) n++;
            return n;
        }
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
    public void AddTo(HistogramBase histogram) => AddTo(histogram, LatencyScale.HighestTrackableNs);

    /// <summary>Add every count of a value up to <paramref name="highest"/> (a histogram sized to <see cref="HighestHeld"/> as read before).</summary>
    public void AddTo(HistogramBase histogram, long highest)
    {
        for (int b = 0; b < _blocks.Length; b++)
        {
            var block = Volatile.Read(ref _blocks[b]);
            if (block is null || ValueAt(b << BlockShift) > highest) continue;
            for (int j = 0; j < BlockSize; j++)
            {
                long n = Volatile.Read(ref block[j]);
                if (n != 0) histogram.RecordValueWithCount(ValueAt((b << BlockShift) + j), n);
            }
        }
    }
}
