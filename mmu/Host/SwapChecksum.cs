using System.Numerics;
using System.Runtime.InteropServices;

namespace ToyVmm.Mmu.Host;

/// <summary>
/// The per-slot checksum: four interleaved CRC-32C lanes over the 4 KiB page
/// (hardware CRC where the CPU has it), seeded with the slot number so that a
/// page written to the wrong slot is caught as well as a flipped bit.
/// </summary>
internal static class SwapChecksum
{
    public static ulong Compute(ReadOnlySpan<byte> page, uint slot)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(page);
        uint a = slot ^ 0x9E3779B9u, b = ~slot, c = slot * 0x85EBCA6Bu, d = slot + 0x27D4EB2Fu;
        int quarter = words.Length / 4;
        for (int i = 0; i < quarter; i++)
        {
            a = BitOperations.Crc32C(a, words[i]);
            b = BitOperations.Crc32C(b, words[i + quarter]);
            c = BitOperations.Crc32C(c, words[i + 2 * quarter]);
            d = BitOperations.Crc32C(d, words[i + 3 * quarter]);
        }
        return ((ulong)(a ^ BitOperations.RotateLeft(c, 16)) << 32) | (b ^ BitOperations.RotateLeft(d, 16));
    }
}
