using HdrHistogram;
using ToyVmm.Mmu.Metrics;
using Xunit;

namespace ToyVmm.Mmu.Tests.Metrics;

public class LatencyCountsTests
{
    private static IEnumerable<long> Values()
    {
        var rng = new Random(7);
        long[] edges = [0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 1_000_000, (1L << 33) + 12345, LatencyScale.HighestTrackableNs];
        foreach (long v in edges) yield return v;
        for (int i = 0; i < 20_000; i++) yield return (long)Math.Exp(rng.NextDouble() * Math.Log(LatencyScale.HighestTrackableNs));
    }

    [Fact]
    public void IndexOf_EveryValue_SameBucketAsHdrHistogram()
    {
        foreach (long v in Values())
        {
            int i = LatencyCounts.IndexOf(v);
            Assert.InRange(i, 0, LatencyCounts.Length - 1);
            long low = LatencyCounts.ValueAt(i);
            var h = LatencyScale.NewHistogram();
            Assert.Equal(h.LowestEquivalentValue(v), low);
            Assert.Equal(i, LatencyCounts.IndexOf(low));
        }
    }

    [Fact]
    public void AddTo_ManyValues_SameHistogramAsRecordingDirectly()
    {
        var direct = LatencyScale.NewHistogram();
        var counts = new LatencyCounts();
        foreach (long v in Values())
        {
            direct.RecordValue(v);
            counts.Record(v);
        }
        HistogramBase viaCounts = LatencyScale.NewHistogram();
        counts.AddTo(viaCounts);
        Assert.Equal(direct.TotalCount, counts.TotalCount);
        Assert.Equal(direct.TotalCount, viaCounts.TotalCount);
        foreach (double p in new[] { 0.0, 1, 50, 90, 99, 99.9, 100 })
            Assert.Equal(direct.GetValueAtPercentile(p), viaCounts.GetValueAtPercentile(p));
        Assert.Equal(direct.GetMaxValue(), viaCounts.GetMaxValue());
    }

    [Fact]
    public void Record_LatenciesOfOneKind_MakeOnlyTheBlocksTheyFallIn()
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var counts = new LatencyCounts();
        for (long ns = 100; ns < 4_000; ns += 7) counts.Record(ns);   // 100 ns to 4 us: blocks 0 to 2
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(3, counts.Blocks);
        Assert.InRange(allocated, 3 * 8 * 1024, 4 * 8 * 1024);   // three blocks and the block table, not the whole 221 KiB range
        counts.Record(LatencyScale.HighestTrackableNs);
        Assert.Equal(4, counts.Blocks);
    }
}
