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

    /// <summary>The vectorised, chunked sums equal the sums' definition taken word by word in order.</summary>
    [Fact]
    public void Compute_EqualsTheSequentialDefinition()
    {
        var page = new byte[Page.Size];
        for (int seed = 0; seed < 4; seed++)
        {
            new Random(seed).NextBytes(page);
            uint slot = (uint)seed * 977 + 5;
            Assert.Equal(Sequential(page, slot), SwapChecksum.Compute(page, slot));
        }
    }

    /// <summary>Eight lanes of 32-bit words (lane = word index mod 8): s1 += word, s2 += s1, in page order; then the same fold.</summary>
    private static ulong Sequential(byte[] page, uint slot)
    {
        var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, uint>(page);
        var s1 = new uint[8];
        var s2 = new uint[8];
        for (int l = 0; l < 8; l++) s1[l] = slot * 0x9E3779B1u + 1 + (uint)l;
        for (int i = 0; i < words.Length; i += 8)
            for (int l = 0; l < 8; l++)
            {
                s1[l] += words[i + l];
                s2[l] += s1[l];
            }
        ulong h = 0xCBF29CE484222325UL ^ slot;
        for (int l = 0; l < 8; l++)
        {
            h = (h ^ s1[l]) * 0x100000001B3UL;
            h = (h ^ s2[l]) * 0x100000001B3UL;
            h = System.Numerics.BitOperations.RotateLeft(h, 29);
        }
        return h;
    }
}
