using ToyVmm.Mmu.Host;
using Xunit;

namespace ToyVmm.Mmu.Tests.Host;

public class SwapChecksumTests
{
    [Fact]
    public void Compute_AnySingleBitFlip_Changes()
    {
        var page = new byte[Page.Size];
        new Random(42).NextBytes(page);
        ulong sum = SwapChecksum.Compute(page, 7);
        for (int bit = 0; bit < page.Length * 8; bit += 13)
        {
            page[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.NotEqual(sum, SwapChecksum.Compute(page, 7));
            page[bit / 8] ^= (byte)(1 << (bit % 8));
        }
        Assert.Equal(sum, SwapChecksum.Compute(page, 7));
    }

    [Fact]
    public void Compute_OtherSlotOrSwappedWords_Changes()
    {
        var page = new byte[Page.Size];
        new Random(43).NextBytes(page);
        ulong sum = SwapChecksum.Compute(page, 7);
        Assert.NotEqual(sum, SwapChecksum.Compute(page, 8));
        // Swap two 32-byte blocks (same lanes, different positions): the position-weighted sum sees it.
        var copy = (byte[])page.Clone();
        copy.AsSpan(0, 32).CopyTo(page.AsSpan(2048, 32));
        copy.AsSpan(2048, 32).CopyTo(page.AsSpan(0, 32));
        Assert.NotEqual(sum, SwapChecksum.Compute(page, 7));
        Assert.NotEqual(SwapChecksum.Compute(new byte[Page.Size], 0), SwapChecksum.Compute(new byte[Page.Size], 1));
    }
}
