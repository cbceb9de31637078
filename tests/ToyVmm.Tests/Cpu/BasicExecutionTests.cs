using System.Runtime.CompilerServices;
using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

public class BasicExecutionTests
{
    [Fact]
    public void Op_Size_Is32Bytes()
    {
        Assert.Equal(32, Unsafe.SizeOf<Op>());
        Assert.Equal(32, Unsafe.SizeOf<TlbEntry>());
    }

    [Fact]
    public void Run_MovAddHlt_ReturnsHaltedWithResult()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rax, 40);
            a.add(rax, 2);
            a.mov(rbx, 0x1122334455667788);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(42UL, cpu.GetGpr(Gpr.Rax));
        Assert.Equal(0x1122334455667788UL, cpu.GetGpr(Gpr.Rbx));
        Assert.Equal(CpuFixture.CodeBase + (ulong)CpuFixture.Assemble(a => { a.mov(rax, 40); a.add(rax, 2); a.mov(rbx, 0x1122334455667788); a.hlt(); }).Length, cpu.Rip);
        Assert.Equal(4, cpu.InstructionsRetired);
    }

    [Fact]
    public void Run_CountingLoop_SumsAndRetiresEveryInstruction()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            var loop = a.CreateLabel();
            a.xor(eax, eax);
            a.mov(ecx, 100);
            a.Label(ref loop);
            a.add(rax, rcx);
            a.dec(ecx);
            a.jnz(loop);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(5050UL, cpu.GetGpr(Gpr.Rax));
        Assert.Equal(2 + 300 + 1, cpu.InstructionsRetired);
    }

    [Fact]
    public void Run_OutToConsole_ReachesHost()
    {
        using var f = new CpuFixture();
        var (exit, _) = f.Run(a =>
        {
            foreach (char c in "hi!") { a.mov(al, (byte)c); a.@out(0xE9, al); }
            a.mov(dx, 0xE9);
            a.mov(al, (byte)'\n');
            a.@out(dx, al);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal("hi!\n", f.Exits.Console.ToString());
    }

    [Fact]
    public void Run_ExitPortRequestsStop_ReturnsStopRequested()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(al, 7);
            a.@out(0xF4, al);
            a.mov(rbx, 1);   // never reached
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.StopRequested, exit.Kind);
        Assert.Equal(0UL, cpu.GetGpr(Gpr.Rbx));
        Assert.Contains(f.Exits.Outs, o => o.Port == 0xF4 && o.Value == 7);
    }

    [Fact]
    public void Run_InAndVmcall_UseHost()
    {
        using var f = new CpuFixture();
        f.Exits.InValue = 0x12345678;
        f.Exits.OnHypercall = v => v.SetGpr(Gpr.Rax, v.GetGpr(Gpr.Rbx) * 2);
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(dx, 0x60);
            a.@in(eax, dx);
            a.mov(r12, rax);
            a.@in(al, 0x61);
            a.mov(r13, rax);
            a.mov(eax, 0x100);
            a.mov(ebx, 21);
            a.vmcall();
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0x12345678UL, cpu.GetGpr(Gpr.R12));
        Assert.Equal(0x12345678UL, cpu.GetGpr(Gpr.R13));   // in al keeps the rest of rax
        Assert.Equal(42UL, cpu.GetGpr(Gpr.Rax));
        Assert.Equal(1, f.Exits.Hypercalls);
    }

    [Fact]
    public void Run_CallRetPushPop_Work()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            var fn = a.CreateLabel();
            a.mov(rdi, 5);
            a.call(fn);
            a.push(rax);
            a.pop(r9);
            a.hlt();
            a.Label(ref fn);
            a.push(rbp);
            a.mov(rbp, rsp);
            a.lea(rax, __[rdi + rdi * 4 + 3]);
            a.leave();
            a.ret();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(28UL, cpu.GetGpr(Gpr.R9));
        Assert.Equal(f.RamBytes - 0x100000, cpu.GetGpr(Gpr.Rsp));
    }

    [Fact]
    public void Run_MemoryOperands_LoadStoreRipRelative()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            var data = a.CreateLabel();
            a.mov(rax, __qword_ptr[data]);
            a.mov(rbx, CpuFixture.DataBase);
            a.mov(__qword_ptr[rbx + 8], rax);
            a.add(__dword_ptr[rbx + 8], 1);
            a.movzx(ecx, __byte_ptr[rbx + 8]);
            a.movsx(rdx, __word_ptr[rbx + 8]);
            a.movsxd(rsi, __dword_ptr[rbx + 12]);
            a.hlt();
            a.Label(ref data);
            a.dq(0x8000_0001_0000_80FF);
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0x8000_0001_0000_8100UL, f.R64(CpuFixture.DataBase + 8));
        Assert.Equal(0x00UL, cpu.GetGpr(Gpr.Rcx));
        Assert.Equal(0xFFFF_FFFF_FFFF_8100UL, cpu.GetGpr(Gpr.Rdx));
        Assert.Equal(0xFFFF_FFFF_8000_0001UL, cpu.GetGpr(Gpr.Rsi));
    }

    [Fact]
    public void Run_InstructionLimit_StopsAndResumes()
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
        var exit = cpu.Run(1000);
        Assert.Equal(VcpuExitKind.InstructionLimit, exit.Kind);
        Assert.InRange(cpu.InstructionsRetired, 1000, 1100);
        long first = (long)cpu.GetGpr(Gpr.Rax);
        exit = cpu.Run(1000);
        Assert.Equal(VcpuExitKind.InstructionLimit, exit.Kind);
        Assert.True((long)cpu.GetGpr(Gpr.Rax) > first);
    }

    [Fact]
    public void Run_StopRequestFromAnotherThread_ReturnsStopRequested()
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
        var t = new Thread(() => { Thread.Sleep(50); cpu.Link.RequestStop(); });
        t.Start();
        var exit = cpu.Run();
        t.Join();
        Assert.Equal(VcpuExitKind.StopRequested, exit.Kind);
        Assert.Equal(ToyVmm.Mmu.Secondary.VcpuMode.OutsideGuest, cpu.Link.Mode);
    }

    [Fact]
    public void Run_FlushRequest_IsAcknowledged()
    {
        using var f = new CpuFixture();
        var cpu = CountingLoop(f);
        long acks = 0;
        var t = new Thread(() =>
        {
            while (cpu.Link.Mode != ToyVmm.Mmu.Secondary.VcpuMode.InGuest) Thread.Yield();
            for (int i = 0; i < 20; i++) cpu.Link.WaitForFlush(cpu.Link.RequestFlush());
            acks = cpu.Link.FlushAcks;
            cpu.Link.RequestStop();
        });
        t.Start();
        var exit = cpu.Run();
        t.Join();
        Assert.Equal(VcpuExitKind.StopRequested, exit.Kind);
        Assert.True(acks >= 1);
        Assert.True(f.R64(CpuFixture.DataBase) > 0);
    }

    [Fact]
    public void Run_YieldRequest_IsCarriedOutOnceAndTheGuestGoesOn()
    {
        using var f = new CpuFixture();
        var cpu = CountingLoop(f);
        long yieldsSeen = 0;
        ulong countBefore = 0, countAfter = 0;
        var t = new Thread(() =>
        {
            while (cpu.Link.Mode != ToyVmm.Mmu.Secondary.VcpuMode.InGuest) Thread.Yield();
            cpu.Link.RequestYield();
            while (cpu.Link.Yields == 0) Thread.Yield();
            yieldsSeen = cpu.Link.Yields;
            countBefore = f.R64(CpuFixture.DataBase);
            while ((countAfter = f.R64(CpuFixture.DataBase)) == countBefore) Thread.Yield();
            cpu.Link.RequestStop();
        });
        t.Start();
        var exit = cpu.Run();
        t.Join();
        Assert.Equal(VcpuExitKind.StopRequested, exit.Kind);
        Assert.Equal(1, yieldsSeen);
        Assert.Equal(1, cpu.Link.Yields);
        Assert.True(countAfter > countBefore);
    }

    /// <summary>A vCPU whose guest increments the qword at DataBase forever.</summary>
    private static Vcpu CountingLoop(CpuFixture f)
    {
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a =>
        {
            var l = a.CreateLabel();
            a.mov(rbx, CpuFixture.DataBase);
            a.Label(ref l);
            a.inc(__qword_ptr[rbx]);
            a.jmp(l);
        }));
        return f.NewVcpu();
    }
}
