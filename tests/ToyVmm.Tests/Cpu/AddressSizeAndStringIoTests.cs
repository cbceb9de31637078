using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// What the host cannot show from user mode: string I/O at CPL 0 (natively it is #GP at IOPL 0,
/// see the fault cases of the differential tests), and instruction counts and faults with the
/// 0x67 prefix op (Ops/AddressSize.cs), which must stay per instruction.
/// </summary>
public class AddressSizeAndStringIoTests
{
    [Fact]
    public void RepOutsb_Cpl0_WritesEveryByteToThePortAndAdvancesRsi()
    {
        using var f = new CpuFixture();
        f.Write(CpuFixture.DataBase, "hello"u8);
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rsi, CpuFixture.DataBase);
            a.mov(ecx, 5);
            a.mov(edx, 0xE9);
            a.rep.outsb();
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal("hello", f.Exits.Console.ToString());
        Assert.Equal(CpuFixture.DataBase + 5, cpu.GetGpr(Gpr.Rsi));
        Assert.Equal(0UL, cpu.GetGpr(Gpr.Rcx));
        Assert.Equal(4 + 5, cpu.InstructionsRetired);
    }

    [Fact]
    public void InswWithAddressSize32_Cpl0_StoresThePortValueAtEdiAndClearsTheHighHalf()
    {
        using var f = new CpuFixture();
        f.Exits.InValue = 0xBEEF;
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rdi, 0xFFFF_FFFF_0000_0000UL | CpuFixture.DataBase);
            a.mov(edx, 0x60);
            a.AddInstruction(Instruction.CreateInsw(32, RepPrefixKind.None));
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0xBEEFUL, f.R64(CpuFixture.DataBase) & 0xFFFF);
        Assert.Equal(CpuFixture.DataBase + 2, cpu.GetGpr(Gpr.Rdi));
    }

    [Fact]
    public void Outsd_Cpl3WithIopl0_RaisesGeneralProtection()
    {
        using var f = new CpuFixture();
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a => { a.outsd(); a.hlt(); }));
        var cpu = f.NewVcpu();
        cpu.SetSegment(SegmentRegister.Cs, 0x23, 0);
        cpu.SetGpr(Gpr.Rsi, CpuFixture.DataBase);
        var exit = cpu.Run(100);
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#GP", exit.Message);
        Assert.Contains($"0x{CpuFixture.CodeBase:x}", exit.Message);
        Assert.Empty(f.Exits.Outs);
    }

    [Fact]
    public void Addr32Operands_InALoop_RetireOneInstructionEach()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            var loop = a.CreateLabel();
            a.mov(ebx, (uint)CpuFixture.DataBase);
            a.mov(ecx, 10);
            a.Label(ref loop);
            a.AddInstruction(Instruction.Create(Code.Add_rm32_r32, new MemoryOperand(Register.EBX, Register.ECX, 4, 0, 0), Register.ECX));
            a.AddInstruction(Instruction.Create(Code.Lea_r64_m, Register.RAX, new MemoryOperand(Register.EAX, 1, 1)));
            a.dec(ecx);
            a.jnz(loop);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(10UL, cpu.GetGpr(Gpr.Rax));
        Assert.Equal(7UL, f.R64(CpuFixture.DataBase + 28) & 0xFFFF_FFFF);
        Assert.Equal(2 + 40 + 1, cpu.InstructionsRetired);
    }

    [Fact]
    public void Addr32Operand_PageFault_ReportsTheInstructionRipAndCountsWhatRetired()
    {
        using var f = new CpuFixture();
        byte[] code = CpuFixture.Assemble(a =>
        {
            a.mov(ebx, 0xFFFF_F000);   // above RAM: not mapped
            a.nop();
            a.AddInstruction(Instruction.Create(Code.Mov_r32_rm32, Register.EAX, new MemoryOperand(Register.EBX, 0x10, 1)));
            a.hlt();
        });
        f.Write(CpuFixture.CodeBase, code);
        var cpu = f.NewVcpu();
        var exit = cpu.Run(100);
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#PF", exit.Message);
        Assert.Contains("CR2 0xfffff010", exit.Message);
        ulong movRip = CpuFixture.CodeBase + (ulong)CpuFixture.Assemble(a => { a.mov(ebx, 0xFFFF_F000); a.nop(); }).Length;
        Assert.Contains($"RIP 0x{movRip:x}", exit.Message);
        Assert.Equal(2, cpu.InstructionsRetired);
    }
}
