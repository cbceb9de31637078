using System.Buffers.Binary;
using System.Text.RegularExpressions;
using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// Far jmp/call through memory (m16:16, m16:32, m16:64) on the host CPU and in the interpreter,
/// both at CPL 3 under Linux's GDT layout (<see cref="GuestMachine"/> in user mode): transfers
/// that succeed must leave the same registers and stack; the ones that fault must fault with the
/// same vector and error code at the same RIP (natively caught by
/// <see cref="NativeRunner.RunCatchingFault"/>; in the guest, the VM error of an IDT-less vCPU).
/// AMD CPUs ignore REX.W here (m16:64 is read as m16:32), so on an AMD host the m16:64 cases are
/// checked against the host running the same transfer as m16:32: the same outcome, with 8-byte
/// offset and pushes in the interpreter (as Intel's SDM defines m16:64).
/// </summary>
[Collection(DifferentialCollection.Name)]
public sealed partial class FarTransferTests
{
    private const int PointerOffset = 0x800;   // the far pointer in scratch

    public static TheoryData<string, bool, int, ushort, bool> Cases()
    {
        var d = new TheoryData<string, bool, int, ushort, bool>();
        // name, call, offset bytes, selector, target is the label (else a non-canonical offset)
        foreach (bool call in new[] { false, true })
            foreach (int size in new[] { 4, 8 })
                foreach (ushort sel in new ushort[] { 0x33, 0x30, 0x31, 0x0, 0x3, 0x10, 0x08, 0x18, 0x2b, 0x40, 0x63, 0x7b, 0x80, 0xFFF8, 0x37 })
                    d.Add($"{(call ? "call" : "jmp")} far m16:{size * 8} to 0x{sel:x}", call, size, sel, true);
        d.Add("jmp far m16:64 to 0x33, non-canonical offset", false, 8, 0x33, false);
        d.Add("call far m16:64 to 0x33, non-canonical offset", true, 8, 0x33, false);
        d.Add("jmp far m16:16 to 0x0", false, 2, 0, true);
        d.Add("call far m16:16 to 0x2b", true, 2, 0x2b, true);
        return d;
    }

    /// <summary>call far then retf of the same width: the callee returns through the pushed CS:RIP.</summary>
    [Theory]
    [InlineData(4)]
    [InlineData(8)]
    public void FarCallThenRetf_ReturnsAfterTheCall(int size)
    {
        using var f = new CpuFixture();
        f.Write(CpuFixture.DataBase, BitConverter.GetBytes(CpuFixture.CodeBase + 0x100));
        f.Write(CpuFixture.DataBase + (ulong)size, BitConverter.GetBytes((ushort)0x08));
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a =>
        {
            a.AddInstruction(Instruction.Create(CodeOf(true, size), new MemoryOperand(Register.RBX)));
            a.AddInstruction(Instruction.Create(Code.Mov_r32_imm32, Register.R8D, 7));
            a.hlt();
        }));
        f.Write(CpuFixture.CodeBase + 0x100, CpuFixture.Assemble(a =>
        {
            a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.R9, new MemoryOperand(Register.RSP)));
            a.AddInstruction(Instruction.Create(size == 8 ? Code.Retfq : Code.Retfd));
        }, CpuFixture.CodeBase + 0x100));
        var cpu = f.NewVcpu();
        cpu.SetGpr(Gpr.Rbx, CpuFixture.DataBase);
        ulong rsp = cpu.GetGpr(Gpr.Rsp);
        var exit = cpu.Run(100);
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(7UL, cpu.GetGpr(Gpr.R8));
        Assert.Equal(rsp, cpu.GetGpr(Gpr.Rsp));
        ulong ret = CpuFixture.CodeBase + (ulong)CpuFixture.Assemble(a => a.AddInstruction(Instruction.Create(CodeOf(true, size), new MemoryOperand(Register.RBX)))).Length;
        Assert.Equal(size == 8 ? ret : ret | 0x08UL << 32, cpu.GetGpr(Gpr.R9));
    }

    private static Code CodeOf(bool call, int size) => (call, size) switch
    {
        (false, 2) => Code.Jmp_m1616, (false, 4) => Code.Jmp_m1632, (false, _) => Code.Jmp_m1664,
        (true, 2) => Code.Call_m1616, (true, 4) => Code.Call_m1632, (true, _) => Code.Call_m1664,
    };

    private static readonly bool AmdHost =
        System.Runtime.Intrinsics.X86.X86Base.CpuId(0, 0) is var v && v.Ebx == 0x68747541 && v.Edx == 0x69746E65 && v.Ecx == 0x444D4163;

    [Theory]
    [MemberData(nameof(Cases))]
    public void FarTransferThroughMemory_SameOutcomeAsTheHostCpu(string name, bool call, int size, ushort selector, bool canonical)
    {
        var native = NativeRunner.Instance;
        Assert.True(native.RegionBelow4G || size == 8, "the native block must lie below 4 GiB for 32-bit offsets");
        ulong pointer = MachineState.ScratchAddress(native.RegionBase, PointerOffset);
        bool widened = size == 8 && AmdHost;   // the host runs m16:32 instead (see the class summary)
        Action<Assembler> emit = Snippet(call, size);
        // The host's copy: m16:32 with a plain REX prefix (40) where the m16:64 one has REX.W (48), so
        // both snippets have the same length and layout.
        Action<Assembler> emitNative = widened ? Snippet(call, 4, plainRex: true) : emit;

        MachineState input = new();
        for (int i = 0; i < 16; i++) input.Gpr[i] = 0x1111_1111UL * (ulong)(i + 1);
        input.Gpr[(int)Gpr.Rbx] = pointer;
        input.Gpr[(int)Gpr.Rsp] = native.RegionBase + RegionLayout.InitialRspOffset;
        input.Rflags = MachineState.ZF;

        LoadedSnippet loaded;
        MachineState? expected;
        NativeFault? fault;
        MachineState nativeInput = input.Clone();
        lock (native.Gate)
        {
            loaded = native.Load(emit);
            ulong offset = canonical ? TargetOf(loaded) : 0x8000_0000_0000_0000UL;
            WritePointer(input, size, offset, selector);
            if (widened)
            {
                native.Load(emitNative);
                WritePointer(nativeInput, 4, offset, selector);
            }
            else nativeInput = input;
            // A non-canonical offset has no 32-bit counterpart: the host cannot show that case on AMD.
            if (widened && !canonical) { expected = null; fault = new NativeFault(11, 13, 0, loaded.SnippetStart); }
            else expected = native.RunCatchingFault(nativeInput, out fault);
        }

        using var guest = new GuestMachine(native.RegionBase, loaded.GuestCodePage, userMode: true);
        var vcpu = guest.CreateVcpu(input, loaded.SnippetStart);
        var exit = vcpu.Run(1000);
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);   // at CPL 3 the run ends in a fault (hlt, or the transfer's)
        var m = FaultLine().Match(exit.Message ?? "");
        Assert.True(m.Success, $"{name}: unexpected VM error: {exit.Message}");
        int vector = int.Parse(m.Groups[1].Value);
        ulong rip = Convert.ToUInt64(m.Groups[2].Value, 16);
        ulong err = m.Groups[3].Success ? Convert.ToUInt64(m.Groups[3].Value, 16) : 0;
        if (fault is not null)
        {
            Assert.True(fault.Rip == rip && fault.Vector == vector && fault.ErrorCode == err,
                $"{name}: the host faulted with vector {fault.Vector}, error code 0x{fault.ErrorCode:x} at 0x{fault.Rip:x}; " +
                $"the interpreter: {exit.Message}");
            return;
        }
        Assert.True(vector == 13 && rip == loaded.SnippetEnd, $"{name}: the host ran through, the interpreter: {exit.Message}");
        var actual = guest.Capture(vcpu);
        if (widened)
        {
            // The host pushed a 4-byte CS and EIP where the interpreter pushed 8 bytes each.
            expected!.Gpr[9] = (uint)expected.Gpr[9];
            expected.Gpr[10] = call ? 0x33 : expected.Gpr[10];
            int top = RegionLayout.InitialRspOffset - RegionLayout.StackWindowOffset;
            if (call)
            {
                Assert.Equal(expected.Gpr[9], BinaryPrimitives.ReadUInt64LittleEndian(actual.StackWindow.AsSpan(top - 16)));
                Assert.Equal(0x33UL, BinaryPrimitives.ReadUInt64LittleEndian(actual.StackWindow.AsSpan(top - 8)));
            }
            actual.StackWindow.CopyTo(expected.StackWindow, 0);
            actual.Scratch.AsSpan(PointerOffset, 10).CopyTo(expected.Scratch.AsSpan(PointerOffset));   // the far pointer's own layout
        }
        string diff = DifferentialEngine.Differences(expected!, actual, FlagRules.All);
        Assert.True(diff.Length == 0, $"{name} ({loaded.Text}):\n{diff}");
    }

    private static Action<Assembler> Snippet(bool call, int size, bool plainRex = false) => a =>
        {
            Label target = a.CreateLabel(), done = a.CreateLabel();
            if (plainRex) a.db(0x40, 0xFF, call ? (byte)0x1B : (byte)0x2B);   // call/jmp far m16:32 [rbx], REX without W
            else a.AddInstruction(Instruction.Create(CodeOf(call, size), new MemoryOperand(Register.RBX)));
            a.AddInstruction(Instruction.Create(Code.Mov_r32_imm32, Register.R8D, 1));   // not reached
            a.jmp(done);
            a.Label(ref target);
            a.AddInstruction(Instruction.Create(Code.Mov_r32_imm32, Register.R8D, 2));
            if (call)
            {
                a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.R9, new MemoryOperand(Register.RSP)));
                a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.R10, new MemoryOperand(Register.RSP, 8, 1)));
                a.AddInstruction(Instruction.Create(Code.Lea_r64_m, Register.RSP, new MemoryOperand(Register.RSP, 2 * size, 1)));   // no flags
            }
            a.Label(ref done);
            a.nop();
        };

    public static TheoryData<string, byte[]> PrivilegedAtCpl3() => new()
    {
        // IOPL is 0 for a Linux process: string I/O is #GP(0) before any memory or port is touched.
        { "outsb", [0x6E] }, { "rep outsd", [0xF3, 0x6F] }, { "insw (addr32)", [0x67, 0x66, 0x6D] }, { "rep insb", [0xF3, 0x6C] },
        { "in al, dx", [0xEC] }, { "out 0x80, al", [0xE6, 0x80] }, { "cli", [0xFA] }, { "hlt", [0xF4] },
    };

    [Theory]
    [MemberData(nameof(PrivilegedAtCpl3))]
    public void IoAndPrivilegedInstructions_AtCpl3_FaultLikeTheHostCpu(string name, byte[] bytes)
    {
        var native = NativeRunner.Instance;
        MachineState input = new();
        input.Gpr[(int)Gpr.Rsi] = input.Gpr[(int)Gpr.Rdi] = MachineState.ScratchAddress(native.RegionBase, 0x100);
        input.Gpr[(int)Gpr.Rcx] = 3;
        input.Gpr[(int)Gpr.Rdx] = 0x80;
        input.Gpr[(int)Gpr.Rsp] = native.RegionBase + RegionLayout.InitialRspOffset;
        LoadedSnippet loaded;
        NativeFault? fault;
        lock (native.Gate)
        {
            loaded = native.Load(a => a.db(bytes));
            native.RunCatchingFault(input, out fault);
        }
        Assert.NotNull(fault);
        using var guest = new GuestMachine(native.RegionBase, loaded.GuestCodePage, userMode: true);
        var vcpu = guest.CreateVcpu(input, loaded.SnippetStart);
        var exit = vcpu.Run(1000);
        var m = FaultLine().Match(exit.Message ?? "");
        Assert.True(m.Success, $"{name}: {exit.Kind} {exit.Message}");
        Assert.True(fault!.Vector == int.Parse(m.Groups[1].Value) && fault.Rip == Convert.ToUInt64(m.Groups[2].Value, 16)
            && fault.ErrorCode == (m.Groups[3].Success ? Convert.ToUInt64(m.Groups[3].Value, 16) : 0),
            $"{name}: the host faulted with vector {fault.Vector}, error code 0x{fault.ErrorCode:x} at 0x{fault.Rip:x}; the interpreter: {exit.Message}");
        Assert.Equal(input.Gpr[(int)Gpr.Rsi], vcpu.GetGpr(Gpr.Rsi));
        Assert.Equal(3UL, vcpu.GetGpr(Gpr.Rcx));
    }

    /// <summary>The label's address: the instruction after "mov r8d, 1; jmp done".</summary>
    private static ulong TargetOf(LoadedSnippet loaded)
    {
        int start = (int)(loaded.SnippetStart - loaded.CodeBase);
        var decoder = Decoder.Create(64, loaded.GuestCodePage.AsSpan(start).ToArray(), loaded.SnippetStart);
        for (int i = 0; i < 3; i++) decoder.Decode(out _);
        return decoder.IP;
    }

    private static void WritePointer(MachineState s, int size, ulong offset, ushort selector)
    {
        var span = s.Scratch.AsSpan(PointerOffset);
        if (size == 2) BinaryPrimitives.WriteUInt16LittleEndian(span, (ushort)offset);
        else if (size == 4) BinaryPrimitives.WriteUInt32LittleEndian(span, (uint)offset);
        else BinaryPrimitives.WriteUInt64LittleEndian(span, offset);
        BinaryPrimitives.WriteUInt16LittleEndian(span[size..], selector);
    }

    [GeneratedRegex(@"\(vector (\d+)\) at RIP 0x([0-9a-f]+)(?:, error code 0x([0-9a-f]+))?")]
    private static partial Regex FaultLine();
}
