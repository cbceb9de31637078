using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// FS/GS overrides on explicit memory operands, which the host cannot show from user mode (its FS
/// is the C library's thread pointer): the base is added by a prefix op (Ops/AddressSize.cs), so
/// loads, stores, read-modify-writes, compares, 0x67 with an override and lea (no segment) must
/// address exactly as before, and the prefix op must not count as an instruction.
/// </summary>
public class SegmentOverrideTests
{
    private const ulong FsBase = CpuFixture.DataBase + 0x1000;
    private const ulong GsBase = CpuFixture.DataBase + 0x3000;

    private static MemoryOperand M(Register seg, Register b, long disp, Register index = Register.None, int scale = 1) =>
        new(b, index, scale, disp, disp == 0 ? 0 : 1, false, seg);

    private static (VcpuExit Exit, Vcpu Cpu) Run(CpuFixture f, Action<Assembler> build) =>
        f.Run(build, setup: v =>
        {
            v.SetSegment(SegmentRegister.Fs, 0, FsBase);
            v.SetSegment(SegmentRegister.Gs, 0, GsBase);
        });

    [Fact]
    public void MovAndAlu_FsGsOperands_AddressBasePlusOffset()
    {
        using var f = new CpuFixture();
        f.W64(FsBase + 0x18, 0x1122_3344_5566_7788);
        f.W64(GsBase + 0x30, 100);
        var (exit, cpu) = Run(f, a =>
        {
            a.mov(ebx, 0x10);
            a.mov(ecx, 4);
            a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.RAX, M(Register.FS, Register.RBX, 8)));          // fs:[rbx+8]
            a.AddInstruction(Instruction.Create(Code.Add_rm32_imm8, M(Register.GS, Register.None, 0x10, Register.RCX, 8), 5)); // gs:[rcx*8+0x10]
            a.AddInstruction(Instruction.Create(Code.Mov_rm64_r64, M(Register.FS, Register.RBX, 0x20), Register.RAX));          // fs:[rbx+0x20]
            a.AddInstruction(Instruction.Create(Code.Lea_r64_m, Register.R8, M(Register.FS, Register.RBX, 8)));                // lea ignores fs
            a.AddInstruction(Instruction.Create(Code.Movzx_r32_rm8, Register.EDX, M(Register.GS, Register.None, 0x40, Register.RCX, 1)));
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0x1122_3344_5566_7788UL, cpu.GetGpr(Gpr.Rax));
        Assert.Equal(105UL, f.R64(GsBase + 0x30));
        Assert.Equal(0x1122_3344_5566_7788UL, f.R64(FsBase + 0x30));
        Assert.Equal(0x18UL, cpu.GetGpr(Gpr.R8));
        Assert.Equal(0UL, cpu.GetGpr(Gpr.Rdx));   // gs:[rcx+0x40] = byte 4 of the qword above: 0
        Assert.Equal(8, cpu.InstructionsRetired);
    }

    [Fact]
    public void CompareAndBranch_FsOperand_TakesTheBranchTheMemorySays()
    {
        using var f = new CpuFixture();
        f.W64(FsBase + 8, 7);
        var (exit, cpu) = Run(f, a =>
        {
            var equal = a.CreateLabel();
            a.mov(ebx, 8);
            a.xor(eax, eax);
            a.AddInstruction(Instruction.Create(Code.Cmp_rm64_imm8, M(Register.FS, Register.RBX, 0), 7));
            a.je(equal);
            a.mov(eax, 1);
            a.Label(ref equal);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0UL, cpu.GetGpr(Gpr.Rax));
        Assert.Equal(5, cpu.InstructionsRetired);
    }

    [Fact]
    public void AddressSize32WithGs_HighBitsOfBase_WrapsThenAddsTheSegmentBase()
    {
        using var f = new CpuFixture();
        f.W64(GsBase + 0x28, 0xABCD);
        var (exit, cpu) = Run(f, a =>
        {
            a.mov(rbx, 0xFFFF_FFFF_0000_0020UL);   // only EBX counts with 0x67
            a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.RAX, M(Register.GS, Register.EBX, 8)));
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0xABCDUL, cpu.GetGpr(Gpr.Rax));
        Assert.Equal(3, cpu.InstructionsRetired);
    }

    [Fact]
    public void Load_FsOperandUnmapped_FaultsAtTheInstructionWithCr2OfBasePlusOffset()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            a.xor(ebx, ebx);
            a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.RAX, M(Register.FS, Register.RBX, 0x10)));
            a.hlt();
        }, setup: v => v.SetSegment(SegmentRegister.Fs, 0, 0x7000_0000_0000));
        // No IDT: the #PF cannot be delivered and the VM stops naming the fault, its RIP (the
        // load, 2 bytes in: the prefix op shares it) and CR2.
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#PF", exit.Message);
        Assert.Contains($"RIP 0x{CpuFixture.CodeBase + 2:x}", exit.Message);
        Assert.Contains("CR2 0x700000000010", exit.Message);
        Assert.Equal(1, cpu.InstructionsRetired);
    }
}
