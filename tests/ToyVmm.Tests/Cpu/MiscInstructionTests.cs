using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// smsw and fwait in the interpreter: the host cannot show them from user mode (UMIP makes
/// smsw #GP there; fwait's #NM needs CR0.TS). maskmovdqu's precise fault too.
/// </summary>
public class MiscInstructionTests
{
    [Fact]
    public void Smsw_RegisterAndMemoryForms_StoreCr0AsWideAsTheDestination()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rax, -1L);
            a.mov(rcx, -1L);
            a.mov(rdx, -1L);
            a.mov(rbx, CpuFixture.DataBase);
            a.mov(__qword_ptr[rbx], -1);
            a.AddInstruction(Instruction.Create(Code.Smsw_rm16, Register.AX));
            a.AddInstruction(Instruction.Create(Code.Smsw_r32m16, Register.ECX));
            a.AddInstruction(Instruction.Create(Code.Smsw_r64m16, Register.RDX));
            a.AddInstruction(Instruction.Create(Code.Smsw_rm16, new MemoryOperand(Register.RBX)));
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        ulong cr0 = cpu.Cr0;
        Assert.Equal(0xFFFF_FFFF_FFFF_0000UL | (cr0 & 0xFFFF), cpu.GetGpr(Gpr.Rax));
        Assert.Equal(cr0 & 0xFFFF_FFFF, cpu.GetGpr(Gpr.Rcx));
        Assert.Equal(cr0, cpu.GetGpr(Gpr.Rdx));
        Assert.Equal(0xFFFF_FFFF_FFFF_0000UL | (cr0 & 0xFFFF), f.R64(CpuFixture.DataBase));
    }

    [Fact]
    public void Fwait_WithMpAndTs_RaisesDeviceNotAvailable_AndIsANopOtherwise()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a => { a.wait(); a.mov(eax, 1); a.hlt(); });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(1UL, cpu.GetGpr(Gpr.Rax));

        using var g = new CpuFixture();
        var (exit2, _) = g.Run(a => { a.wait(); a.hlt(); }, setup: v => v.Cr0 |= 8);   // TS, with MP already set
        Assert.Equal(VcpuExitKind.VmError, exit2.Kind);
        Assert.Contains("#NM", exit2.Message);
    }

    [Fact]
    public void Maskmovdqu_SelectedBytesOnAnUnmappedPage_FaultsWithoutWritingTheMappedOnes()
    {
        using var f = new CpuFixture();
        ulong end = f.RamBytes;   // the identity map ends here
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rdi, end - 8);
            a.pcmpeqb(xmm1, xmm1);          // every byte selected
            a.mov(rax, 0x1122334455667788);
            a.movq(xmm0, rax);
            a.maskmovdqu(xmm0, xmm1);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#PF", exit.Message);
        Assert.Equal(0UL, f.R64(end - 8));
        Assert.Equal(4, cpu.InstructionsRetired);
    }
}
