using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// Bounded code-cache memory: retired blocks' slots are reused after a grace period, and the
/// arena is flushed at its cap, without a vCPU ever entering a dropped block through a chain
/// link or a jump-cache entry.
/// </summary>
public class CodeCacheTests
{
    private const ulong Region = 0x400000;
    private const int Blocks = 40_000;

    /// <summary>
    /// Writes <see cref="Blocks"/> distinct blocks at <see cref="Region"/>, each
    /// <c>inc rax; cmp rax, 0; jne next</c> (a fused compare-and-branch that chains into the
    /// next block), then <c>ret</c>: a guest that keeps meeting new code, like a JIT.
    /// </summary>
    private static void WriteRegion(CpuFixture f)
    {
        byte[] one = [0x48, 0xFF, 0xC0, 0x48, 0x83, 0xF8, 0x00, 0x75, 0x00];
        var code = new byte[Blocks * one.Length + 1];
        for (int i = 0; i < Blocks; i++) one.CopyTo(code, i * one.Length);
        code[^1] = 0xC3;
        f.Write(Region, code);
    }

    private static void CallRegionThrice(Iced.Intel.Assembler a)
    {
        var again = a.CreateLabel();
        a.xor(eax, eax);
        a.mov(ebx, 3);
        a.Label(ref again);
        a.mov(rdx, Region);
        a.call(rdx);
        a.dec(ebx);
        a.jne(again);
        a.hlt();
    }

    [Fact]
    public void Run_NewCodeForeverWithOneVcpu_ArenaStaysWithinTheCapAndResultsAreRight()
    {
        using var f = new CpuFixture(16 << 20);
        WriteRegion(f);
        var cache = CodeCache.For(f.Memory);
        cache.CapBytes = 1 << 20;
        var (exit, cpu) = f.Run(CallRegionThrice, limit: 10_000_000);
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(3UL * Blocks, cpu.GetGpr(Gpr.Rax));
        var st = cache.Stats;
        Assert.True(st.Flushes >= 3 * 5, $"flushes {st.Flushes}");
        Assert.True(st.BlocksDecoded >= 3 * Blocks, $"decoded {st.BlocksDecoded}");
        Assert.True(st.PeakArenaBytes <= st.CapBytes, $"peak {st.PeakArenaBytes} > cap {st.CapBytes}");
        Assert.True(st.LiveBytes <= st.CapBytes);
        Assert.True(st.BlocksFreed > 0);
    }

    [Fact]
    public void Run_NewCodeForeverWithTwoVcpus_BothGetTheRightResult()
    {
        using var f = new CpuFixture(16 << 20);
        WriteRegion(f);
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(CallRegionThrice));
        var cache = CodeCache.For(f.Memory);
        cache.CapBytes = 1 << 20;
        var cpus = new[] { f.NewVcpu(0, 2), f.NewVcpu(1, 2) };
        var exits = new VcpuExit[2];
        var threads = cpus.Select((c, i) => new Thread(() => exits[i] = c.Run(20_000_000))).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(VcpuExitKind.Halted, exits[i].Kind);
            Assert.Equal(3UL * Blocks, cpus[i].GetGpr(Gpr.Rax));
        }
        var st = cache.Stats;
        Assert.True(st.Flushes > 0);
        Assert.True(st.BlocksFreed > 0);
        Assert.Equal(0, st.LiveBlocks + st.RetiredBlocks - (st.BlocksDecoded - st.BlocksFreed));
    }

    [Fact]
    public void Run_CodeRewrittenEveryIteration_SlotsAreReused()
    {
        using var f = new CpuFixture();
        var cache = CodeCache.For(f.Memory);
        const int n = 20_000;
        var (exit, cpu) = f.Run(a =>
        {
            var patch = a.CreateLabel();   // also the loop head
            a.mov(ecx, n);
            a.xor(ebx, ebx);
            a.lea(rdx, __[patch]);
            a.Label(ref patch);
            a.db(0xB8, 0, 0, 0, 0);             // mov eax, imm32: the immediate is rewritten below
            a.add(rbx, rax);
            a.inc(__dword_ptr[rdx + 1]);
            a.dec(ecx);
            a.jne(patch);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal((ulong)n * (n - 1) / 2, cpu.GetGpr(Gpr.Rbx));
        var st = cache.Stats;
        Assert.True(st.BlocksInvalidated >= n, $"invalidated {st.BlocksInvalidated}");
        Assert.True(st.BlocksFreed >= n - 10, $"freed {st.BlocksFreed}");
        Assert.True(st.PeakArenaBytes <= 1 << 20, $"peak {st.PeakArenaBytes}");
        Assert.True(st.LiveBlocks <= 8);
    }

    [Fact]
    public void Block_Header_Is128Bytes()
    {
        Assert.Equal(128, Block.HeaderSize);
        unsafe { Assert.Equal(Block.HeaderSize, sizeof(Block)); }
    }
}
