using ToyVmm.Cli;
using Xunit;

namespace ToyVmm.Tests.Cli;

public class SwapOvercommitTests
{
    private const ulong G = 1UL << 30, M = 1UL << 20;

    [Fact]
    public void Warning_RamWithinFramesPlusFreeSpace_None()
    {
        Assert.Null(SwapOvercommit.Warning(64 * G, 1 * G, 64 * G + 16 * M, (long)(70 * G), "/tmp"));
    }

    [Fact]
    public void Warning_RamBeyondFramesPlusFreeSpace_OneLineNamingTheSizes()
    {
        string? w = SwapOvercommit.Warning(64 * G, 1 * G, 64 * G + 16 * M, (long)(24 * G + 123_456), "/dev/shm");
        Assert.Equal("guest RAM of 64G is more than the host can hold: 1G of host memory plus 24G of free space for the swap file on /dev/shm; " +
                     "the run ends with status 5 (out of swap space) if the guest touches more", w);
        Assert.DoesNotContain('\n', w!);
    }

    [Fact]
    public void Warning_SwapSmallerThanFreeSpace_CountsTheSwapSize()
    {
        string? w = SwapOvercommit.Warning(4 * G, 16 * M, 1 * G, (long)(100 * G), "/tmp");
        Assert.Contains("16M of host memory plus 1G of free space", w);
    }

    [Fact]
    public void Warning_FreeSpaceUnknown_None()
    {
        Assert.Null(SwapOvercommit.Warning(64 * G, 1 * G, 64 * G, null, "/tmp"));
    }
}
