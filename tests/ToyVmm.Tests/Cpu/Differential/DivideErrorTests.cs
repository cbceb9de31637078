using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// Division inputs that fault cannot run natively in the test process, so #DE is
/// checked in the interpreter alone: through an IDT gate (the handler sees the
/// faulting RIP and untouched operands) and with no IDT (the VM stops with an error).
/// </summary>
[Collection(DifferentialCollection.Name)]
public sealed class DivideErrorTests
{
    private const ulong RegionGva = 0x4000_0000;
    private const int HandlerOffset = 0x800;

    public static TheoryData<string, Code, ulong, ulong, ulong> Faulting() => new()
    {
        { "div r8 by zero", Code.Div_rm8, 0x1234, 0, 0 },
        { "div r16 by zero", Code.Div_rm16, 5, 7, 0 },
        { "div r32 by zero", Code.Div_rm32, 5, 7, 0 },
        { "div r64 by zero", Code.Div_rm64, 5, 7, 0 },
        { "idiv r64 by zero", Code.Idiv_rm64, 5, 0, 0 },
        { "div r8 quotient overflow", Code.Div_rm8, 0x0200, 0, 2 },
        { "div r16 quotient overflow", Code.Div_rm16, 0, 3, 3 },
        { "div r32 quotient overflow", Code.Div_rm32, 0, 0xFFFF_FFFF, 0x10 },
        { "div r64 quotient overflow", Code.Div_rm64, 0, 1, 1 },
        { "idiv r8 min / -1", Code.Idiv_rm8, 0xFF80, 0, 0xFF },
        { "idiv r16 min / -1", Code.Idiv_rm16, 0x8000, 0xFFFF, 0xFFFF },
        { "idiv r32 min / -1", Code.Idiv_rm32, 0x8000_0000, 0xFFFF_FFFF, 0xFFFF_FFFF },
        { "idiv r64 min / -1", Code.Idiv_rm64, 0x8000_0000_0000_0000, ulong.MaxValue, ulong.MaxValue },
        { "idiv r32 positive overflow", Code.Idiv_rm32, 0, 1, 2 },
    };

    private static Register DivisorRegister(Code code) => code switch
    {
        Code.Div_rm8 or Code.Idiv_rm8 => Register.CL,
        Code.Div_rm16 or Code.Idiv_rm16 => Register.CX,
        Code.Div_rm32 or Code.Idiv_rm32 => Register.ECX,
        _ => Register.RCX,
    };

    /// <summary>Code page: the division at the start, hlt after it, the #DE handler at <see cref="HandlerOffset"/>.</summary>
    private static (byte[] Page, ulong DivRip, ulong HltRip) Build(Code code)
    {
        var page = new byte[RegionLayout.CodeSize];
        Array.Fill(page, (byte)0xCC);
        var a = new Assembler(64);
        a.AddInstruction(Instruction.Create(code, DivisorRegister(code)));
        a.hlt();
        var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), RegionGva);
        ms.ToArray().CopyTo(page, 0);
        var h = new Assembler(64);
        h.AddInstruction(Instruction.Create(Code.Mov_r64_imm64, Register.R15, 0xDEUL));
        h.hlt();
        ms = new MemoryStream();
        h.Assemble(new StreamCodeWriter(ms), RegionGva + HandlerOffset);
        ms.ToArray().CopyTo(page, HandlerOffset);
        var decoder = Decoder.Create(64, page, RegionGva);
        decoder.Decode(out var div);
        return (page, RegionGva, RegionGva + (ulong)div.Length);
    }

    private static MachineState Input(ulong rax, ulong rdx, ulong divisor)
    {
        var s = new MachineState();
        for (int i = 0; i < 16; i++) s.Gpr[i] = 0x1111_0000UL * (ulong)i;
        s.Gpr[0] = rax;
        s.Gpr[2] = rdx;
        s.Gpr[1] = divisor;
        s.Gpr[4] = RegionGva + RegionLayout.InitialRspOffset;
        s.Rflags = MachineState.CF | MachineState.ZF;
        return s;
    }

    [Theory]
    [MemberData(nameof(Faulting))]
    public void Divide_FaultingOperands_DeliversDivideErrorThroughIdt(string name, Code code, ulong rax, ulong rdx, ulong divisor)
    {
        var (page, divRip, _) = Build(code);
        using var guest = new GuestMachine(RegionGva, page);
        guest.SetInterruptGate(0, RegionGva + HandlerOffset);
        var input = Input(rax, rdx, divisor);
        var vcpu = guest.CreateVcpu(input, divRip);
        var exit = vcpu.Run(1000);
        Assert.True(exit.Kind == VcpuExitKind.Halted, $"{name}: expected the #DE handler to run and halt, got {exit.Kind}: {exit.Message}");
        Assert.Equal(0xDEUL, vcpu.GetGpr(Gpr.R15));
        // The frame: RIP of the faulting division, CS, RFLAGS, RSP, SS (no error code for #DE).
        ulong rsp = vcpu.GetGpr(Gpr.Rsp);
        Assert.Equal(input.Gpr[4] - 40, rsp);
        var stack = new byte[40];
        guest.Read((int)(rsp - RegionGva), stack);
        Assert.Equal(divRip, BitConverter.ToUInt64(stack, 0));
        Assert.Equal(0x08UL, BitConverter.ToUInt64(stack, 8) & 0xFFFF);
        Assert.Equal(input.Gpr[4], BitConverter.ToUInt64(stack, 24));
        // A fault leaves the operands as they were.
        Assert.Equal(rax, vcpu.GetGpr(Gpr.Rax));
        Assert.Equal(rdx, vcpu.GetGpr(Gpr.Rdx));
        Assert.Equal(divisor, vcpu.GetGpr(Gpr.Rcx));
    }

    [Theory]
    [MemberData(nameof(Faulting))]
    public void Divide_FaultingOperandsWithoutIdt_StopsTheVmNamingTheVector(string name, Code code, ulong rax, ulong rdx, ulong divisor)
    {
        var (page, divRip, _) = Build(code);
        using var guest = new GuestMachine(RegionGva, page);
        var vcpu = guest.CreateVcpu(Input(rax, rdx, divisor), divRip);
        var exit = vcpu.Run(1000);
        Assert.True(exit.Kind == VcpuExitKind.VmError, $"{name}: expected a VM error for #DE with no IDT, got {exit.Kind}");
        Assert.False(string.IsNullOrWhiteSpace(exit.Message));
        string m = exit.Message!.ToLowerInvariant();
        Assert.True(m.Contains("#de") || m.Contains("divide") || m.Contains("vector 0"), $"{name}: the message should name #DE: {exit.Message}");
        Assert.Contains($"{divRip:x}", m);
    }

    [Fact]
    public void Divide_ValidOperandsInTheSameHarness_DoNotFault()
    {
        var (page, divRip, hltRip) = Build(Code.Div_rm64);
        using var guest = new GuestMachine(RegionGva, page);
        guest.SetInterruptGate(0, RegionGva + HandlerOffset);
        var vcpu = guest.CreateVcpu(Input(100, 0, 7), divRip);
        var exit = vcpu.Run(1000);
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(14UL, vcpu.GetGpr(Gpr.Rax));
        Assert.Equal(2UL, vcpu.GetGpr(Gpr.Rdx));
        Assert.NotEqual(0xDEUL, vcpu.GetGpr(Gpr.R15));
        Assert.True(vcpu.Rip == hltRip || vcpu.Rip == hltRip + 1);
    }
}
