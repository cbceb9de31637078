using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// 16-byte memory operands that must be aligned (movdqa/movaps/movapd, legacy SSE
/// arithmetic on m128, cmpxchg16b) fault with #GP(0) when they are not; that would
/// kill the test process natively, so it is checked in the interpreter alone.
/// </summary>
[Collection(DifferentialCollection.Name)]
public sealed class AlignmentFaultTests
{
    private const ulong RegionGva = 0x4000_0000;
    private const int HandlerOffset = 0x800;
    private const int GeneralProtection = 13;

    private static Instruction Ins(Code code, Register reg, int disp) =>
        Instruction.Create(code, reg, new MemoryOperand(Register.RBX, disp, 1));

    private static Instruction Ins(Code code, int disp, Register reg) =>
        Instruction.Create(code, new MemoryOperand(Register.RBX, disp, 1), reg);

    public static TheoryData<string, int, bool> Cases() => new()
    {
        // name, displacement from a 16-byte aligned rbx, faults
        { "movdqa xmm, m128", 1, true },
        { "movdqa xmm, m128", 16, false },
        { "movaps m128, xmm", 8, true },
        { "movapd xmm, m128", 4, true },
        { "pxor xmm, m128", 4, true },
        { "paddd xmm, m128", 2, true },
        { "movdqu xmm, m128", 1, false },
        { "cmpxchg16b m128", 8, true },
        { "cmpxchg16b m128", 32, false },
    };

    private static Instruction Make(string name, int disp) => name switch
    {
        "movdqa xmm, m128" => Ins(Code.Movdqa_xmm_xmmm128, Register.XMM3, disp),
        "movaps m128, xmm" => Ins(Code.Movaps_xmmm128_xmm, disp, Register.XMM3),
        "movapd xmm, m128" => Ins(Code.Movapd_xmm_xmmm128, Register.XMM3, disp),
        "pxor xmm, m128" => Ins(Code.Pxor_xmm_xmmm128, Register.XMM3, disp),
        "paddd xmm, m128" => Ins(Code.Paddd_xmm_xmmm128, Register.XMM3, disp),
        "movdqu xmm, m128" => Ins(Code.Movdqu_xmm_xmmm128, Register.XMM3, disp),
        _ => Instruction.Create(Code.Cmpxchg16b_m128, new MemoryOperand(Register.RBX, disp, 1)),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Sse_MisalignedM128_RaisesGeneralProtectionWithErrorCodeZero(string name, int disp, bool faults)
    {
        var page = new byte[RegionLayout.CodeSize];
        Array.Fill(page, (byte)0xCC);
        var code = Assemble(a => { a.AddInstruction(Make(name, disp)); a.hlt(); }, RegionGva);
        code.CopyTo(page, 0);
        Assemble(a => { a.AddInstruction(Instruction.Create(Code.Mov_r64_imm64, Register.R15, 0x6DUL)); a.hlt(); }, RegionGva + HandlerOffset).CopyTo(page, HandlerOffset);

        using var guest = new GuestMachine(RegionGva, page);
        guest.SetInterruptGate(GeneralProtection, RegionGva + HandlerOffset);
        var input = new MachineState();
        input.Gpr[(int)Gpr.Rbx] = MachineState.ScratchAddress(RegionGva, 0x400); // 16-byte aligned
        input.Gpr[(int)Gpr.Rsp] = RegionGva + RegionLayout.InitialRspOffset;
        var vcpu = guest.CreateVcpu(input, RegionGva);
        var exit = vcpu.Run(1000);

        Assert.True(exit.Kind == VcpuExitKind.Halted, $"{name} +{disp}: {exit.Kind}: {exit.Message}");
        if (!faults)
        {
            Assert.NotEqual(0x6DUL, vcpu.GetGpr(Gpr.R15));
            return;
        }
        Assert.Equal(0x6DUL, vcpu.GetGpr(Gpr.R15));
        ulong rsp = vcpu.GetGpr(Gpr.Rsp);
        Assert.Equal(input.Gpr[(int)Gpr.Rsp] - 48, rsp); // error code, RIP, CS, RFLAGS, RSP, SS
        var frame = new byte[16];
        guest.Read((int)(rsp - RegionGva), frame);
        Assert.Equal(0UL, BitConverter.ToUInt64(frame, 0));
        Assert.Equal(RegionGva, BitConverter.ToUInt64(frame, 8));
    }

    private static byte[] Assemble(Action<Assembler> emit, ulong ip)
    {
        var a = new Assembler(64);
        emit(a);
        var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), ip);
        return ms.ToArray();
    }
}
