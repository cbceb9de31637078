using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// System-state changes the SDM forbids raise #GP: with no IDT the VM error names it, with an
/// IDT the guest's handler sees the vector's error code and the state is unchanged.
/// </summary>
public class IllegalStateChangeTests
{
    private const uint MsrEfer = 0xC0000080;
    private const ulong Idt = 0x300000, Handler = 0x140000;

    /// <summary>Runs <paramref name="build"/> with a #GP handler that stores the error code in R9 and halts.</summary>
    private static (VcpuExit Exit, Vcpu Cpu) RunWithGpHandler(CpuFixture f, Action<Assembler> build, Action<Vcpu>? setup = null)
    {
        f.Write(Handler, CpuFixture.Assemble(a => { a.pop(r9); a.mov(r10, 0x6D); a.hlt(); }, Handler));
        ExceptionTests.Gate(f, Idt, 13, Handler);
        return f.Run(a => { a.mov(r9, 0xBAD); build(a); a.hlt(); }, setup: v => { v.SetIdtr(Idt, 0xFFF); setup?.Invoke(v); });
    }

    private static void ClearPg(Assembler a)
    {
        a.mov(rax, cr0);
        a.btr(eax, 31);
        a.mov(cr0, rax);
    }

    [Fact]
    public void MovCr0_ClearPgInLongModeWithoutIdt_VmErrorNamesGp()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(ClearPg);
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#GP (vector 13)", exit.Message);
        Assert.NotEqual(0UL, cpu.Cr0 & (1UL << 31));
        Assert.NotEqual(0UL, cpu.Efer & (1UL << 10));
    }

    [Fact]
    public void MovCr0_ClearPgInLongMode_GuestSeesGpZero()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = RunWithGpHandler(f, ClearPg);
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0x6DUL, cpu.GetGpr(Gpr.R10));
        Assert.Equal(0UL, cpu.GetGpr(Gpr.R9));
        Assert.NotEqual(0UL, cpu.Cr0 & (1UL << 31));
    }

    [Fact]
    public void MovCr0_NwWithoutCd_RaisesGp()
    {
        using var f = new CpuFixture();
        var (exit, _) = f.Run(a => { a.mov(rax, cr0); a.bts(eax, 29); a.btr(eax, 30); a.mov(cr0, rax); });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#GP (vector 13)", exit.Message);
    }

    [Fact]
    public void MovCr0_RewritingTheSameValueInLongMode_IsAccepted()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a => { a.mov(rax, cr0); a.mov(cr0, rax); a.mov(r8, 1); a.hlt(); });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(1UL, cpu.GetGpr(Gpr.R8));
    }

    [Fact]
    public void Wrmsr_EferZeroWithPagingOnWithoutIdt_VmErrorNamesGp()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a => { a.mov(ecx, MsrEfer); a.xor(eax, eax); a.xor(edx, edx); a.wrmsr(); });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#GP (vector 13)", exit.Message);
        Assert.Equal(0xD01UL, cpu.Efer);
    }

    [Fact]
    public void Wrmsr_EferClearingLmeWithPagingOn_GuestSeesGpZero()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = RunWithGpHandler(f, a =>
        {
            a.mov(ecx, MsrEfer);
            a.rdmsr();
            a.btr(eax, 8);   // LME
            a.wrmsr();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0x6DUL, cpu.GetGpr(Gpr.R10));
        Assert.Equal(0UL, cpu.GetGpr(Gpr.R9));
        Assert.Equal(0xD01UL, cpu.Efer);
    }

    [Theory]
    [InlineData(1)]    // reserved
    [InlineData(9)]    // reserved
    [InlineData(12)]   // SVME: not implemented, reserved here
    [InlineData(40)]   // reserved
    public void Wrmsr_EferReservedBit_RaisesGp(int bit)
    {
        using var f = new CpuFixture();
        var (exit, cpu) = RunWithGpHandler(f, a =>
        {
            a.mov(ecx, MsrEfer);
            a.rdmsr();
            a.mov(r8, 1UL << bit);
            a.mov(r11, r8);
            a.shr(r11, 32);
            a.or(eax, r8d);
            a.or(edx, r11d);
            a.wrmsr();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0x6DUL, cpu.GetGpr(Gpr.R10));
        Assert.Equal(0xD01UL, cpu.Efer);
    }

    [Fact]
    public void Wrmsr_EferSameLmeWithPagingOn_IsAccepted()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a => { a.mov(ecx, MsrEfer); a.rdmsr(); a.btr(eax, 11); a.wrmsr(); a.hlt(); });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0x501UL, cpu.Efer);   // NXE cleared, LME/LMA kept
    }

    /// <summary>Pushes an iretq frame (SS, RSP, RFLAGS, CS, RIP) and executes it.</summary>
    private static void Iret(Assembler a, ushort cs, ushort ss, ulong rip)
    {
        a.mov(rax, rsp);
        a.push(ss);
        a.push(rax);
        a.push(2);
        a.push(cs);
        a.mov(rax, rip);
        a.push(rax);
        a.iretq();
    }

    [Fact]
    public void Iretq_CsBeyondGdtLimitWithoutIdt_VmErrorNamesGpAndSelector()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a => Iret(a, 0x50, 0x10, CpuFixture.CodeBase));
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#GP (vector 13)", exit.Message);
        Assert.Contains("error code 0x50", exit.Message);
        Assert.Equal((ushort)0x08, cpu.GetSelector(SegmentRegister.Cs));
    }

    [Theory]
    [InlineData(0x50, 0x10, 0x50)]    // CS beyond the GDT limit (0x27)
    [InlineData(0x08, 0x48, 0x48)]    // SS beyond the GDT limit
    [InlineData(0x10, 0x10, 0x10)]    // CS is a data segment
    [InlineData(0x08, 0x08, 0x08)]    // SS is a code segment
    [InlineData(0x23, 0x10, 0x10)]    // to CPL 3 with a DPL 0 SS (RPL 0)
    [InlineData(0x23, 0x13, 0x10)]    // to CPL 3 with a DPL 0 SS (RPL 3)
    [InlineData(0x23, 0x00, 0x00)]    // to CPL 3 with a null SS
    [InlineData(0x23, 0x03, 0x00)]    // to CPL 3 with a null SS, RPL 3
    [InlineData(0x0B, 0x10, 0x08)]    // RPL 3 on a DPL 0 code segment
    public void Iretq_BadSelector_GuestSeesGpWithErrorCode(int cs, int ss, int error)
    {
        using var f = new CpuFixture();
        var (exit, cpu) = RunWithGpHandler(f, a => Iret(a, (ushort)cs, (ushort)ss, CpuFixture.CodeBase + 0x800));
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0x6DUL, cpu.GetGpr(Gpr.R10));
        Assert.Equal((ulong)error, cpu.GetGpr(Gpr.R9));
        Assert.Equal(0, cpu.Cpl);
    }

    [Theory]
    [InlineData(0x08, 0x10, 0)]
    [InlineData(0x08, 0x00, 0)]   // null SS is allowed when returning to CPL 0
    [InlineData(0x23, 0x1B, 3)]
    public void Iretq_ValidFrame_Returns(int cs, int ss, int cpl)
    {
        using var f = new CpuFixture();
        ulong target = CpuFixture.CodeBase + 0x800;
        f.Write(target, CpuFixture.Assemble(a => { a.mov(r8, 0x77); a.ud2(); }, target));
        var (exit, cpu) = f.Run(a => Iret(a, (ushort)cs, (ushort)ss, target));
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#UD", exit.Message);
        Assert.Equal(0x77UL, cpu.GetGpr(Gpr.R8));
        Assert.Equal(cpl, cpu.Cpl);
        Assert.Equal((ushort)ss, cpu.GetSelector(SegmentRegister.Ss));
    }
}
