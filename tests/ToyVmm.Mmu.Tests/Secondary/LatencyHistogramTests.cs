using Xunit;
using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Mmu.Tests.Secondary;

public class LatencyHistogramTests
{
    [Fact]
    public void BucketOf_UpperEdge_ContainsValueWithinOneEighth()
    {
        foreach (long ns in new long[] { 0, 1, 7, 8, 9, 15, 16, 100, 150, 1000, 123_456, 10_000_000_000 })
        {
            int b = LatencyHistogram.BucketOf(ns);
            long edge = LatencyHistogram.UpperEdge(b);
            Assert.True(edge >= ns, $"{ns} -> bucket {b} edge {edge}");
            Assert.True(edge <= ns + ns / 8 + 1, $"{ns} -> bucket {b} edge {edge}");
        }
    }

    [Fact]
    public void Percentiles_OfUniformSamples_AreNearTheTrueValues()
    {
        var h = new LatencyHistogram();
        for (int i = 1; i <= 1000; i++) h.RecordNs(i * 10);
        Assert.InRange(h.PercentileNs(0.5), 5000, 5000 * 9 / 8);
        Assert.InRange(h.PercentileNs(0.99), 9900, 10_000);
        Assert.Equal(10_000, h.MaxNs);
        Assert.Equal(1000, h.Count);
    }

    [Fact]
    public void MergeFrom_AddsCounts()
    {
        var a = new LatencyHistogram(); var b = new LatencyHistogram();
        a.RecordNs(100); b.RecordNs(200); b.RecordNs(300);
        a.MergeFrom(b);
        Assert.Equal(3, a.Count);
        Assert.Equal(300, a.MaxNs);
    }
}
