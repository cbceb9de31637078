using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ToyVmm.Mmu.Host;

/// <summary>
/// The per-slot checksum: a Fletcher-style pair of running sums over 32-bit
/// lanes (s1 = sum of words, s2 = sum of s1, so a word's position matters),
/// vectorised, seeded with the slot number so that a page written to the
/// wrong slot is caught as well as a flipped bit, and folded to 64 bits.
/// Any single flipped bit changes s1; swapped or shifted words change s2.
/// </summary>
/// <remarks>
/// Chosen over four interleaved CRC-32C lanes, which cost about 4x as much per
/// page in <c>SwapChecksumBenchmarks</c>: the checksum is on the page-out path,
/// whose budget is 2 µs a page (500k pages/s).
/// </remarks>
internal static class SwapChecksum
{
    /// <remarks>
    /// Compiled fully optimised at its first call: every page-out and swap-in runs it, and
    /// its unoptimised first tier (the vector loop without inlined vector operations) cost
    /// as much CPU as the fully optimised version over a whole short run (a profile of
    /// <c>host-latency</c>: bench/RESULTS.md "Page-out CPU per page").
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static ulong Compute(ReadOnlySpan<byte> page, uint slot)
    {
        var lanes = MemoryMarshal.Cast<byte, Vector256<uint>>(page);
        var s1 = Vector256.Create(slot * 0x9E3779B1u + 1) + Vector256.Create(0u, 1u, 2u, 3u, 4u, 5u, 6u, 7u);
        var s2 = Vector256<uint>.Zero;
        // Two accumulator pairs halve the dependency chain; combined with the offset they cover.
        var t1 = Vector256<uint>.Zero;
        var t2 = Vector256<uint>.Zero;
        int half = lanes.Length / 2;
        for (int i = 0; i < half; i++)
        {
            s1 += lanes[i];
            s2 += s1;
            t1 += lanes[half + i];
            t2 += t1;
        }
        // Second half's words sit 'half' positions later: fold t into s as if summed sequentially.
        s2 += t2 + s1 * Vector256.Create((uint)half);
        s1 += t1;
        ulong h = 0xCBF29CE484222325UL ^ slot;
        for (int i = 0; i < Vector256<uint>.Count; i++)
        {
            h = (h ^ s1.GetElement(i)) * 0x100000001B3UL;
            h = (h ^ s2.GetElement(i)) * 0x100000001B3UL;
            h = BitOperations.RotateLeft(h, 29);
        }
        return h;
    }
}
