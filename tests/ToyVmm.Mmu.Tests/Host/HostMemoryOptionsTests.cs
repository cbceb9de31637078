using ToyVmm.Mmu.Host;
using Xunit;

namespace ToyVmm.Mmu.Tests.Host;

public class HostMemoryOptionsTests
{
    [Theory]
    [InlineData(0UL)]
    [InlineData(4097UL)]
    [InlineData(4096UL * 10)]
    public void Validate_BadHostMemory_Throws(ulong bytes)
    {
        var o = new HostMemoryOptions { HostMemoryBytes = bytes };
        Assert.Throws<ArgumentException>(o.Validate);
    }

    [Fact]
    public void Validate_InvertedWatermarks_Throws()
    {
        var o = new HostMemoryOptions { HostMemoryBytes = 1 << 20, MinFreeFrames = 20, LowFreeFrames = 10, HighFreeFrames = 30 };
        var e = Assert.Throws<ArgumentException>(o.Validate);
        Assert.Contains("min <= low", e.Message);
    }

    [Fact]
    public void Watermarks_Defaults_AreOrdered()
    {
        var o = new HostMemoryOptions { HostMemoryBytes = 64UL << 20 };
        o.Validate();
        var (min, low, high) = o.Watermarks();
        Assert.True(0 < min && min < low && low < high, $"{min} {low} {high}");
    }
}
