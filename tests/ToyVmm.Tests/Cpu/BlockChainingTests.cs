using Iced.Intel;
using ToyVmm.Cpu;
using ToyVmm.Mmu.Secondary;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// Block chaining (Exec.Chain): a block's branch goes straight into the successor block
/// found in the jump cache. Counts, faults, requests and self-modifying code must behave
/// exactly as when every block returns to the run loop.
/// </summary>
public class BlockChainingTests
{
    // Per iteration: jmp, call, (mov, ret), add, dec, jnz = 7 instructions over 4 blocks.
    private static void ChainedLoop(Assembler a, int iterations)
    {
        var loop = a.CreateLabel(); var mid = a.CreateLabel(); var fn = a.CreateLabel(); var done = a.CreateLabel();
        a.xor(eax, eax);
        a.mov(ecx, iterations);
        a.Label(ref loop);
        a.jmp(mid);
        a.Label(ref fn);
        a.mov(edx, 3);
        a.ret();
        a.Label(ref mid);
        a.call(fn);
        a.add(rax, rdx);
        a.dec(ecx);
        a.jnz(loop);
        a.jmp(done);
        a.Label(ref done);
    }

    [Fact]
    public void Run_ChainedBlocks_RetiredCountIsExact()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a => { ChainedLoop(a, 1000); a.hlt(); });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(3000UL, cpu.GetGpr(Gpr.Rax));
        Assert.Equal(2 + 1000 * 7 + 1 + 1, cpu.InstructionsRetired);
    }

    [Fact]
    public void Run_FaultAfterChainedBlocks_RipAndRetiredCountAreExact()
    {
        using var f = new CpuFixture();
        ulong faultRip = 0;
        var (exit, cpu) = f.Run(a =>
        {
            ChainedLoop(a, 500);
            a.mov(rbx, 0x7000_0000_0000);
            var at = a.CreateLabel();
            a.Label(ref at);
            a.mov(r8, __qword_ptr[rbx]);   // #PF: not mapped
            a.hlt();
        });
        faultRip = CpuFixture.CodeBase + (ulong)CpuFixture.Assemble(a => { ChainedLoop(a, 500); a.mov(rbx, 0x7000_0000_0000); }).Length;
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#PF (vector 14)", exit.Message);
        Assert.Equal(faultRip, cpu.Rip);
        Assert.Equal(2 + 500 * 7 + 1 + 1, cpu.InstructionsRetired);
    }

    [Fact]
    public void Run_PatchedSuccessorOnAnotherPage_ChainedCallRunsTheNewCode()
    {
        using var f = new CpuFixture();
        ulong fn = 0x180000;
        f.Write(fn, CpuFixture.Assemble(a => { a.mov(eax, 1); a.ret(); }, fn));
        // The loop calls fn (chained once warm); at iteration 50 it patches fn's immediate to 2.
        var (exit, cpu) = f.Run(a =>
        {
            var loop = a.CreateLabel(); var skip = a.CreateLabel();
            a.mov(ecx, 100);
            a.mov(rbx, fn);
            a.Label(ref loop);
            a.call(rbx);
            a.add(r8, rax);
            a.cmp(ecx, 50);
            a.jne(skip);
            a.mov(__byte_ptr[rbx + 1], 2);
            a.Label(ref skip);
            a.dec(ecx);
            a.jnz(loop);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(51UL * 1 + 49UL * 2, cpu.GetGpr(Gpr.R8));
    }

    [Fact]
    public void Run_PatchedLoopBody_ChainedBranchRunsTheNewCode()
    {
        using var f = new CpuFixture();
        // The loop body's block patches itself: "add r8, 1" becomes "add r8, 5" halfway.
        var (exit, cpu) = f.Run(a =>
        {
            var loop = a.CreateLabel(); var body = a.CreateLabel(); var skip = a.CreateLabel();
            a.mov(ecx, 100);
            a.lea(rbx, __[body]);
            a.Label(ref loop);
            a.cmp(ecx, 50);
            a.jne(body);
            a.mov(__byte_ptr[rbx + 3], 5);   // 49 83 c0 01: the imm8
            a.Label(ref body);
            a.add(r8, 1);
            a.dec(ecx);
            a.jnz(loop);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(50UL * 1 + 50UL * 5, cpu.GetGpr(Gpr.R8));
    }

    [Fact]
    public void Run_EndlessChainedLoop_AnswersFlushesAndStops()
    {
        using var f = new CpuFixture();
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a =>
        {
            var l = a.CreateLabel(); var m = a.CreateLabel();
            a.Label(ref l);
            a.inc(rax);
            a.jmp(m);
            a.Label(ref m);
            a.jmp(l);
        }));
        var cpu = f.NewVcpu();
        var t = new Thread(() =>
        {
            while (cpu.Link.Mode != VcpuMode.InGuest) Thread.Yield();
            for (int i = 0; i < 20; i++) cpu.Link.WaitForFlush(cpu.Link.RequestFlush());
            cpu.Link.RequestStop();
        });
        t.Start();
        var exit = cpu.Run();
        t.Join();
        Assert.Equal(VcpuExitKind.StopRequested, exit.Kind);
        Assert.True(cpu.Link.FlushAcks >= 1);
        // inc, jmp, jmp per iteration: the count stays exact whatever block the stop came at.
        long n = (long)cpu.GetGpr(Gpr.Rax);
        Assert.InRange(cpu.InstructionsRetired, 3 * n - 2, 3 * n);
    }

    [Fact]
    public void Run_InstructionLimitInChainedLoop_StopsWithinABlock()
    {
        using var f = new CpuFixture();
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a =>
        {
            var l = a.CreateLabel();
            a.Label(ref l);
            a.inc(rax);
            a.jmp(l);
        }));
        var cpu = f.NewVcpu();
        var exit = cpu.Run(10_001);
        Assert.Equal(VcpuExitKind.InstructionLimit, exit.Kind);
        Assert.Equal(10_002, cpu.InstructionsRetired);
        Assert.Equal(5_001UL, cpu.GetGpr(Gpr.Rax));
    }
}
