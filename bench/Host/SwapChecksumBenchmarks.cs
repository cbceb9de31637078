using System.Numerics;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using ToyVmm.Mmu.Host;

namespace ToyVmm.Bench.Host;

/// <summary>
/// The swap slot checksum (per 4 KiB page) against the alternative it replaced:
/// four interleaved hardware CRC-32C lanes.
/// </summary>
public class SwapChecksumBenchmarks
{
    private readonly byte[] _page = new byte[4096];

    [GlobalSetup]
    public void Setup() => new Random(1).NextBytes(_page);

    [Benchmark(Baseline = true)]
    public ulong Crc32cFourLanes()
    {
        var words = MemoryMarshal.Cast<byte, ulong>(_page);
        uint a = 1, b = 2, c = 3, d = 4;
        int q = words.Length / 4;
        for (int i = 0; i < q; i++)
        {
            a = BitOperations.Crc32C(a, words[i]);
            b = BitOperations.Crc32C(b, words[i + q]);
            c = BitOperations.Crc32C(c, words[i + 2 * q]);
            d = BitOperations.Crc32C(d, words[i + 3 * q]);
        }
        return ((ulong)(a ^ c) << 32) | (b ^ d);
    }

    [Benchmark]
    public ulong VectorFletcher() => SwapChecksum.Compute(_page, 7);
}
