using System.IO.Hashing;
using System.Numerics;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using ToyVmm.Mmu.Host;

namespace ToyVmm.Bench.Host;

/// <summary>
/// The swap slot checksum (per 4 KiB page) against the alternatives: four interleaved
/// hardware CRC-32C lanes (what it replaced) and the vectorised hashes of
/// System.IO.Hashing (XxHash3, XxHash64). <see cref="Pages"/> distinct pages are hashed
/// in turn, so that with 4096 of them (16 MiB, past the last-level cache) each page comes
/// from memory as a page being paged out does; with 1 it stays in the L1 cache.
/// </summary>
public class SwapChecksumBenchmarks
{
    private byte[] _pages = [];
    private int _next;

    [Params(1, 4096)]
    public int Pages { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _pages = new byte[Pages * 4096];
        new Random(1).NextBytes(_pages);
    }

    private ReadOnlySpan<byte> NextPage()
    {
        int p = _next;
        _next = p + 1 == Pages ? 0 : p + 1;
        return _pages.AsSpan(p * 4096, 4096);
    }

    [Benchmark(Baseline = true)]
    public ulong Crc32cFourLanes()
    {
        var words = MemoryMarshal.Cast<byte, ulong>(NextPage());
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
    public ulong VectorFletcher() => SwapChecksum.Compute(NextPage(), 7);

    [Benchmark]
    public ulong XxHash3Seeded() => XxHash3.HashToUInt64(NextPage(), 7);

    [Benchmark]
    public ulong XxHash64Seeded() => XxHash64.HashToUInt64(NextPage(), 7);
}
