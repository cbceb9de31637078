using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// The comparison itself can fail: the guest is given a different instruction of
/// the same length than the host ran, and the difference must be found and named.
/// </summary>
[Collection(DifferentialCollection.Name)]
public sealed class DifferentialEngineTests
{
    /// <summary>Runs <paramref name="hostSnippet"/> natively and <paramref name="guestSnippet"/> in the interpreter from the same input.</summary>
    private static string CompareDifferent(Instruction hostSnippet, Instruction guestSnippet, Action<CaseContext>? prepare = null, ulong flagMask = FlagRules.All)
    {
        var native = NativeRunner.Instance;
        var rng = new Random(11);
        var variant = Variant.Of(hostSnippet, new MemSpec(Register.RBX, Register.None, 1, 0x10));
        var ctx = new CaseContext(rng, native.RegionBase, variant);
        ctx.Generate(StateProfile.Integer);
        prepare?.Invoke(ctx);
        MachineState expected;
        LoadedSnippet guestCode;
        lock (native.Gate)
        {
            var host = native.Load(a => a.AddInstruction(hostSnippet));
            expected = native.Run(ctx.State);
            guestCode = native.Load(a => a.AddInstruction(guestSnippet));
            Assert.Equal(host.SnippetEnd, guestCode.SnippetEnd); // same length, so both end at the same hlt
        }
        using var guest = new GuestMachine(native.RegionBase, guestCode.GuestCodePage);
        var vcpu = guest.CreateVcpu(ctx.State, guestCode.SnippetStart);
        Assert.Equal(VcpuExitKind.Halted, vcpu.Run(100).Kind);
        return DifferentialEngine.Differences(expected, guest.Capture(vcpu), flagMask);
    }

    [Fact]
    public void Differences_GuestRanSubInsteadOfAdd_NamesTheRegister()
    {
        string diff = CompareDifferent(
            Instruction.Create(Code.Add_rm64_r64, Register.RAX, Register.RCX),
            Instruction.Create(Code.Sub_rm64_r64, Register.RAX, Register.RCX),
            c => { c.State.Gpr[0] = 5; c.State.Gpr[1] = 3; });
        Assert.Contains("rax: host 0x0000000000000008, interpreter 0x0000000000000002", diff);
    }

    [Fact]
    public void Differences_GuestRanTestInsteadOfCmp_NamesTheFlags()
    {
        string diff = CompareDifferent(
            Instruction.Create(Code.Cmp_rm32_r32, Register.EAX, Register.ECX),
            Instruction.Create(Code.Test_rm32_r32, Register.EAX, Register.ECX),
            c => { c.State.Gpr[0] = 1; c.State.Gpr[1] = 2; });
        Assert.StartsWith("  flags", diff); // registers equal, flags not
        Assert.Contains("CF", diff);
    }

    [Fact]
    public void Differences_FlagsOutsideTheMask_AreIgnored()
    {
        string diff = CompareDifferent(
            Instruction.Create(Code.Cmp_rm32_r32, Register.EAX, Register.ECX),
            Instruction.Create(Code.Test_rm32_r32, Register.EAX, Register.ECX),
            c => { c.State.Gpr[0] = 1; c.State.Gpr[1] = 2; },
            flagMask: FlagRules.DF);
        Assert.Equal("", diff);
    }

    [Fact]
    public void Differences_GuestStoredAnotherRegister_NamesTheMemory()
    {
        string diff = CompareDifferent(
            Instruction.Create(Code.Mov_rm32_r32, new MemoryOperand(Register.RBX, 0x10, 1), Register.EAX),
            Instruction.Create(Code.Mov_rm32_r32, new MemoryOperand(Register.RBX, 0x10, 1), Register.ECX),
            c => { c.State.Gpr[0] = 0x11111111; c.State.Gpr[1] = 0x22222222; });
        Assert.Contains("memory (scratch)", diff);
        Assert.Contains("11111111", diff);
        Assert.Contains("22222222", diff);
    }

    [Fact]
    public void Run_AFormBothSidesAgreeOn_CountsEveryCaseAndReportsNothing()
    {
        var form = new Form
        {
            Family = "self-test", Name = "add r32, r32",
            Variants = [Variant.Of(Instruction.Create(Code.Add_rm32_r32, Register.EAX, Register.ECX))],
            CasesPerVariant = 16,
        };
        var result = DifferentialEngine.Run(form, 1);
        // Every case runs once per tier (interpreted and compiled).
        Assert.Equal(Math.Max(4, (int)(16 * DifferentialEngine.Scale)) * DifferentialEngine.Tiers.Length, result.Compared);
        Assert.Equal(0, result.Mismatches);
        Assert.Empty(result.Reports);
    }
}
