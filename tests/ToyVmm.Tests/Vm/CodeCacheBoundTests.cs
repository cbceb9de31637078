using ToyVmm.Cpu;
using ToyVmm.Loader;
using ToyVmm.Vm;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Vm;

/// <summary>
/// Hostile guests that invalidate their own code forever run in bounded code-cache memory,
/// measured by the cache's counters, with the instruction budget ending the run.
/// </summary>
public class CodeCacheBoundTests
{
    private const long Cap = 1 << 20;

    private static (VmResult Result, CodeCacheStats Stats) RunCapped(ElfImage image, long instructions)
    {
        using var vm = VirtualMachine.Create(new VmConfig(AsmGuest.Ram, 1, instructions), image, new MemoryStream());
        var cache = CodeCache.For(vm.Memory);
        cache.CapBytes = Cap;
        using var hang = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var result = vm.Run(hang.Token);
        return (result, cache.Stats);
    }

    [Fact]
    public void Run_CounterOnItsOwnCodePageForever_StaysUnderTheCapUntilTheInstructionLimit()
    {
        var image = AsmGuest.Build(a =>
        {
            var loop = a.CreateLabel();
            var counter = a.CreateLabel();
            a.Label(ref loop);
            a.inc(__qword_ptr[counter]);
            a.dec(ecx);
            a.jmp(loop);
            a.Label(ref counter);
            a.dq(0);
        });
        var (result, st) = RunCapped(image, 600_000);
        Assert.Equal(VmOutcome.InstructionLimit, result.Outcome);
        Assert.True(st.BlocksInvalidated >= 150_000, $"invalidated {st.BlocksInvalidated}");
        Assert.True(st.PeakArenaBytes <= Cap, $"peak arena {st.PeakArenaBytes}");
        Assert.True(st.LiveBytes <= Cap && st.LiveBlocks <= 8, $"live {st.LiveBlocks} blocks, {st.LiveBytes} bytes");
        Assert.True(st.RetiredBlocks <= 8, $"retired {st.RetiredBlocks}");
    }

    [Fact]
    public void Run_CodeRewritingLoopForever_StaysUnderTheCapUntilTheInstructionLimit()
    {
        var image = AsmGuest.Build(a =>
        {
            var patch = a.CreateLabel();   // also the loop head
            a.lea(rdx, __[patch]);
            a.Label(ref patch);
            a.db(0x48, 0x01, 0xC3);             // add rbx, rax: flipped to sub rbx, rax (0x29) and back
            a.xor(__byte_ptr[rdx + 1], 0x28);
            a.inc(rax);
            a.jmp(patch);
        });
        var (result, st) = RunCapped(image, 600_000);
        Assert.Equal(VmOutcome.InstructionLimit, result.Outcome);
        Assert.True(st.BlocksInvalidated >= 100_000, $"invalidated {st.BlocksInvalidated}");
        Assert.True(st.PeakArenaBytes <= Cap, $"peak arena {st.PeakArenaBytes}");
        Assert.True(st.LiveBytes <= Cap && st.LiveBlocks <= 8, $"live {st.LiveBlocks} blocks, {st.LiveBytes} bytes");
    }

    [Fact]
    public void Run_CounterOnItsOwnCodePage_CountsRight()
    {
        const int n = 50_000;
        var image = AsmGuest.Build(a =>
        {
            var loop = a.CreateLabel();
            var counter = a.CreateLabel();
            var done = a.CreateLabel();
            a.mov(ecx, n);
            a.Label(ref loop);
            a.inc(__qword_ptr[counter]);
            a.dec(ecx);
            a.jne(loop);
            a.mov(rax, __qword_ptr[counter]);
            a.ExpectEqual(rax, n, 3);
            a.Exit(0);
            a.Label(ref counter);
            a.dq(0);
        });
        var (result, st) = RunCapped(image, 10_000_000);
        Assert.Equal(VmOutcome.ExitPort, result.Outcome);
        Assert.Equal(0, result.GuestStatus);
        Assert.True(st.PeakArenaBytes <= Cap);
    }
}
