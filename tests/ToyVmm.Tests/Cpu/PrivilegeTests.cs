using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

public class PrivilegeTests
{
    private const uint MsrStar = 0xC0000081, MsrLstar = 0xC0000082, MsrFmask = 0xC0000084;

    [Fact]
    public void SyscallSysret_RoundTripBetweenCpl0AndCpl3()
    {
        using var f = new CpuFixture();
        ulong kernel = 0x140000, user = 0x150000;
        // Kernel entry: count, return to user with rax = rdi * 2.
        f.Write(kernel, CpuFixture.Assemble(a =>
        {
            a.inc(r15);
            a.lea(rax, __[rdi + rdi]);
            a.sysretq();
        }, kernel));
        // User code: two syscalls, then a privileged instruction (#GP, no IDT: VM error).
        f.Write(user, CpuFixture.Assemble(a =>
        {
            a.mov(edi, 21);
            a.syscall();
            a.mov(r12, rax);
            a.mov(edi, 50);
            a.syscall();
            a.mov(r13, rax);
            a.pushfq();
            a.pop(r14);
            a.hlt();
        }, user));
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(ecx, MsrStar);
            a.mov(edx, (0x10 << 16) | 0x08);   // sysret base 0x10: SS 0x1B, CS 0x23; syscall CS 0x08
            a.xor(eax, eax);
            a.wrmsr();
            a.mov(ecx, MsrLstar);
            a.mov(eax, (uint)kernel);
            a.xor(edx, edx);
            a.wrmsr();
            a.mov(ecx, MsrFmask);
            a.mov(eax, 0x200);
            a.wrmsr();
            a.mov(rcx, user);
            a.mov(r11, 0x202);
            a.sysretq();
        });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#GP", exit.Message);
        Assert.Contains("CPL 3", exit.Message);
        Assert.Equal(2UL, cpu.GetGpr(Gpr.R15));
        Assert.Equal(42UL, cpu.GetGpr(Gpr.R12));
        Assert.Equal(100UL, cpu.GetGpr(Gpr.R13));
        Assert.Equal(0x202UL, cpu.GetGpr(Gpr.R14) & 0x202);
        Assert.Equal((ushort)0x23, cpu.GetSelector(SegmentRegister.Cs));
        Assert.Equal(3, cpu.Cpl);
    }

    [Fact]
    public void InterruptFromCpl3_SwitchesToRsp0FromTss()
    {
        using var f = new CpuFixture();
        ulong idt = 0x300000, tss = 0x310000, user = 0x150000, handler = 0x160000;
        ulong rsp0 = 0x380000;
        f.W64(tss + 4, rsp0);
        // TSS descriptor at GDT 0x28 (16 bytes): type 9, present, limit 0x67.
        ulong tssLo = 0x67 | ((tss & 0xFFFFFF) << 16) | (0x89UL << 40) | ((tss >> 24 & 0xFF) << 56);
        f.W64(f.Gdt + 0x28, tssLo);
        f.W64(f.Gdt + 0x30, tss >> 32);
        ExceptionTests.Gate(f, idt, 0x80, handler, dpl: 3);
        f.Write(handler, CpuFixture.Assemble(a =>
        {
            a.mov(r8, rsp);                      // kernel stack after the push
            a.mov(r9, __qword_ptr[rsp + 8]);     // saved CS
            a.mov(r10, __qword_ptr[rsp + 24]);   // saved RSP
            a.iretq();
        }, handler));
        f.Write(user, CpuFixture.Assemble(a =>
        {
            a.mov(rsp, 0x370000);
            a.@int(0x80);
            a.mov(r11, 0x77);
            a.ud2();
        }, user));
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(ax, 0x28);
            a.ltr(ax);
            // iretq to CPL 3: SS, RSP, RFLAGS, CS, RIP.
            a.push(0x1B);
            a.push(0x370000);
            a.push(0x2);
            a.push(0x23);
            a.push((int)user);
            a.iretq();
        }, setup: v => { v.SetGdtr(f.Gdt, 0x37); v.SetIdtr(idt, 0xFFF); });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);   // the ud2 has no gate
        Assert.Equal(rsp0 - 40, cpu.GetGpr(Gpr.R8));
        Assert.Equal(0x23UL, cpu.GetGpr(Gpr.R9));
        Assert.Equal(0x370000UL, cpu.GetGpr(Gpr.R10));
        Assert.Equal(0x77UL, cpu.GetGpr(Gpr.R11));
        Assert.Equal(0x8BUL, (f.R64(f.Gdt + 0x28) >> 40) & 0xFF);   // TSS marked busy
    }

    [Fact]
    public void SwapgsAndFsBase_AddressThroughSegmentBases()
    {
        using var f = new CpuFixture();
        f.W64(CpuFixture.DataBase + 0x10, 0xAAAA);
        f.W64(CpuFixture.DataBase + 0x1010, 0xBBBB);
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(ecx, 0xC0000100);          // FS base
            a.mov(eax, (uint)CpuFixture.DataBase);
            a.xor(edx, edx);
            a.wrmsr();
            a.mov(ecx, 0xC0000102);          // kernel GS base
            a.mov(eax, (uint)CpuFixture.DataBase + 0x1000);
            a.wrmsr();
            a.mov(r8, __qword_ptr.fs[0x10]);
            a.swapgs();
            a.mov(r9, __qword_ptr.gs[0x10]);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0xAAAAUL, cpu.GetGpr(Gpr.R8));
        Assert.Equal(0xBBBBUL, cpu.GetGpr(Gpr.R9));
    }

    [Fact]
    public void Cpuid_ReportsSignatureAndOnlyImplementedFeatures()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(eax, 0x40000000);
            a.cpuid();
            a.mov(r8d, ebx); a.mov(r9d, ecx); a.mov(r10d, edx);
            a.mov(eax, 1);
            a.cpuid();
            a.mov(r11d, edx);
            a.mov(r12d, ecx);
            a.rdtsc();
            a.shl(rdx, 32);
            a.or(rax, rdx);
            a.mov(r13, rax);
            a.rdtsc();
            a.shl(rdx, 32);
            a.or(rax, rdx);
            a.mov(r14, rax);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        var sig = new byte[12];
        BitConverter.TryWriteBytes(sig.AsSpan(0), (uint)cpu.GetGpr(Gpr.R8));
        BitConverter.TryWriteBytes(sig.AsSpan(4), (uint)cpu.GetGpr(Gpr.R9));
        BitConverter.TryWriteBytes(sig.AsSpan(8), (uint)cpu.GetGpr(Gpr.R10));
        Assert.Equal("ToyVmmToyVmm", System.Text.Encoding.ASCII.GetString(sig));
        ulong leaf1Edx = cpu.GetGpr(Gpr.R11), leaf1Ecx = cpu.GetGpr(Gpr.R12);
        Assert.NotEqual(0UL, leaf1Edx & (1 << 26));      // SSE2
        Assert.NotEqual(0UL, leaf1Edx & (1 << 23));      // MMX (Ops/Mmx*.cs)
        Assert.Equal(0UL, leaf1Edx & 1);                 // no x87 FPU
        Assert.Equal(0UL, leaf1Ecx & 1);                 // no SSE3
        Assert.True(cpu.GetGpr(Gpr.R14) >= cpu.GetGpr(Gpr.R13));
    }
}
