using System.Text.RegularExpressions;
using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// #MF from MMX instructions against the host CPU: x87 control and status words with exception
/// flags set, masked or not, then an MMX form (register, memory, and the
/// MMX/XMM conversions, whose memory forms make no x87 transition). The host's fault (SIGFPE,
/// trap 16, caught by <see cref="NativeRunner.RunCatchingFault"/>) and the interpreter's (the VM
/// error of an IDT-less vCPU) must agree in vector and RIP; where neither faults, the whole state
/// must agree as in the catalog.
/// </summary>
[Collection(DifferentialCollection.Name)]
public sealed partial class MmxFaultTests
{
    public static TheoryData<string, ushort, ushort> Cases()
    {
        var d = new TheoryData<string, ushort, ushort>();
        // FSW.ES and B as the flags and masks make them (fxrstor derives them: Catalog.Mmx.cs checks that).
        (ushort Fcw, ushort Fsw)[] words =
        [
            (0x37F, 0x0000), (0x37F, 0x0001), (0x37E, 0x8081), (0x37F, 0x003F), (0x37B, 0x8084),
            (0x37B, 0x0001), (0x35F, 0x80A0), (0x360, 0x2020), (0x37E, 0x0002),
        ];
        foreach (var name in Snippets.Keys)
            foreach (var (fcw, fsw) in words)
                d.Add(name, fcw, fsw);
        return d;
    }

    private static readonly Dictionary<string, Action<Assembler>> Snippets = new()
    {
        ["paddb mm2, mm1"] = a => a.AddInstruction(Instruction.Create(Code.Paddb_mm_mmm64, Register.MM2, Register.MM1)),
        ["movq mm0, [rbx]"] = a => a.AddInstruction(Instruction.Create(Code.Movq_mm_mmm64, Register.MM0, new MemoryOperand(Register.RBX))),
        ["emms"] = a => a.AddInstruction(Instruction.Create(Code.Emms)),
        ["movq2dq xmm3, mm1"] = a => a.AddInstruction(Instruction.Create(Code.Movq2dq_xmm_mm, Register.XMM3, Register.MM1)),
        ["cvtpi2ps xmm3, mm1"] = a => a.AddInstruction(Instruction.Create(Code.Cvtpi2ps_xmm_mmm64, Register.XMM3, Register.MM1)),
        ["cvtpi2ps xmm3, [rbx]"] = a => a.AddInstruction(Instruction.Create(Code.Cvtpi2ps_xmm_mmm64, Register.XMM3, new MemoryOperand(Register.RBX))),
        ["cvtpi2pd xmm3, [rbx]"] = a => a.AddInstruction(Instruction.Create(Code.Cvtpi2pd_xmm_mmm64, Register.XMM3, new MemoryOperand(Register.RBX))),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void MmxForm_X87ExceptionState_FaultsLikeTheHostCpu(string name, ushort fcw, ushort fsw)
    {
        var native = NativeRunner.Instance;
        MachineState input = new() { Fcw = fcw, Fsw = (ushort)(fsw | 3 << 11), Ftw = 0x0F };
        for (int i = 0; i < 16; i++) input.Gpr[i] = 0x1111_1111UL * (ulong)(i + 1);
        input.Gpr[(int)Gpr.Rbx] = MachineState.ScratchAddress(native.RegionBase, 0x100);
        input.Gpr[(int)Gpr.Rsp] = native.RegionBase + RegionLayout.InitialRspOffset;
        for (int i = 0; i < 8; i++) input.St[i] = new UInt128(0x4000 + (ulong)i, 0x0123_4567_0000_0001UL * (ulong)(i + 1));
        for (int i = 0; i < 16; i++) input.Xmm[i] = new UInt128(0x5555_0000UL + (ulong)i, 0xAAAA_0000UL + (ulong)i);

        LoadedSnippet loaded;
        MachineState? expected;
        NativeFault? fault;
        lock (native.Gate)
        {
            loaded = native.Load(Snippets[name]);
            expected = native.RunCatchingFault(input, out fault);
        }

        using var guest = new GuestMachine(native.RegionBase, loaded.GuestCodePage);
        var vcpu = guest.CreateVcpu(input, loaded.SnippetStart);
        var exit = vcpu.Run(1000);
        string what = $"{name} with FCW 0x{fcw:x4}, FSW 0x{input.Fsw:x4}";
        if (fault is not null)
        {
            Assert.True(exit.Kind == VcpuExitKind.VmError, $"{what}: the host faulted with vector {fault.Vector} at 0x{fault.Rip:x}, the interpreter ran on ({exit.Kind})");
            var m = FaultLine().Match(exit.Message ?? "");
            Assert.True(m.Success && int.Parse(m.Groups[1].Value) == fault.Vector && Convert.ToUInt64(m.Groups[2].Value, 16) == fault.Rip,
                $"{what}: the host faulted with vector {fault.Vector} at 0x{fault.Rip:x}; the interpreter: {exit.Message}");
            return;
        }
        Assert.True(exit.Kind == VcpuExitKind.Halted, $"{what}: the host ran through, the interpreter: {exit.Kind} {exit.Message}");
        string diff = DifferentialEngine.Differences(expected!, guest.Capture(vcpu), FlagRules.All);
        Assert.True(diff.Length == 0, $"{what}:\n{diff}");
    }

    [GeneratedRegex(@"\(vector (\d+)\) at RIP 0x([0-9a-f]+)")]
    private static partial Regex FaultLine();
}
