using System.Diagnostics;

namespace ToyVmm.Mmu.Metrics;

/// <summary>
/// A log-linear latency histogram in nanoseconds: 8 sub-buckets per power of
/// two (at most 12.5% relative error), 64 powers. One writer at a time (one per
/// vCPU or thread), no lock and no allocation per sample; merge at exit.
/// </summary>
public sealed class LatencyHistogram
{
    private const int SubBits = 3;
    private const int Sub = 1 << SubBits;
    private const int Buckets = 64 * Sub;
    private readonly long[] _counts = new long[Buckets];
    private long _total;
    private long _sumNs;
    private long _maxNs;

    public long Count => Volatile.Read(ref _total);
    public long MaxNs => _maxNs;
    public double MeanNs => _total == 0 ? 0 : (double)_sumNs / _total;

    public static long TicksToNs(long ticks) => (long)(ticks * (1e9 / Stopwatch.Frequency));

    public void RecordTicks(long ticks) => RecordNs(TicksToNs(ticks));

    public void RecordNs(long ns)
    {
        if (ns < 0) ns = 0;
        _counts[BucketOf(ns)]++;
        _sumNs += ns;
        if (ns > _maxNs) _maxNs = ns;
        Volatile.Write(ref _total, _total + 1);
    }

    public void MergeFrom(LatencyHistogram other)
    {
        for (int i = 0; i < Buckets; i++) _counts[i] += other._counts[i];
        _total += other._total;
        _sumNs += other._sumNs;
        _maxNs = Math.Max(_maxNs, other._maxNs);
    }

    /// <summary>The value at quantile <paramref name="q"/> (0..1), as the upper edge of its bucket.</summary>
    public long PercentileNs(double q)
    {
        if (_total == 0) return 0;
        long rank = Math.Max(1, (long)Math.Ceiling(q * _total));
        long seen = 0;
        for (int i = 0; i < Buckets; i++)
        {
            seen += _counts[i];
            if (seen >= rank) return Math.Min(UpperEdge(i), _maxNs);
        }
        return _maxNs;
    }

    internal static int BucketOf(long ns)
    {
        if (ns < Sub) return (int)ns;
        int exp = 63 - System.Numerics.BitOperations.LeadingZeroCount((ulong)ns);   // >= SubBits
        int sub = (int)((ns >> (exp - SubBits)) & (Sub - 1));
        return (exp - SubBits + 1) * Sub + sub;
    }

    internal static long UpperEdge(int bucket)
    {
        if (bucket < Sub) return bucket;
        int exp = bucket / Sub + SubBits - 1, sub = bucket % Sub;
        return ((long)(Sub + sub + 1) << (exp - SubBits)) - 1;
    }

    public override string ToString() =>
        $"n={Count} p50={PercentileNs(0.5)}ns p99={PercentileNs(0.99)}ns max={MaxNs}ns";
}
