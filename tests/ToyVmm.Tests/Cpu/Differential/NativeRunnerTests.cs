using Iced.Intel;
using Xunit;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>The native side checked against values computed in C#, so that it can be trusted as the reference.</summary>
public sealed class NativeRunnerTests
{
    private static MachineState RandomState(Random rng, ulong regionBase)
    {
        var s = new MachineState();
        for (int i = 0; i < 16; i++) s.Gpr[i] = (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 63);
        s.Gpr[4] = regionBase + RegionLayout.InitialRspOffset;
        s.Rflags = (ulong)rng.Next() & MachineState.InputFlags & ~MachineState.DF;
        for (int i = 0; i < 16; i++) s.Xmm[i] = new UInt128((ulong)rng.NextInt64(), (ulong)rng.NextInt64());
        rng.NextBytes(s.Scratch);
        rng.NextBytes(s.StackWindow);
        return s;
    }

    private static MachineState[] RunMany(Action<Assembler> snippet, MachineState[] inputs, out LoadedSnippet loaded)
    {
        var native = NativeRunner.Instance;
        lock (native.Gate)
        {
            loaded = native.Load(snippet);
            return inputs.Select(native.Run).ToArray();
        }
    }

    [Fact]
    public void Run_Nop_LeavesEveryRegisterFlagAndByteAsGiven()
    {
        var rng = new Random(1);
        var inputs = Enumerable.Range(0, 64).Select(_ => RandomState(rng, NativeRunner.Instance.RegionBase)).ToArray();
        ulong[] bits = [MachineState.CF, MachineState.PF, MachineState.AF, MachineState.ZF, MachineState.SF, MachineState.OF];
        for (int i = 0; i < inputs.Length; i++)
        {
            inputs[i].Rflags = 0;
            for (int b = 0; b < bits.Length; b++)
                if ((i >> b & 1) != 0) inputs[i].Rflags |= bits[b];
        }
        var outputs = RunMany(a => a.nop(), inputs, out var loaded);
        Assert.Equal("nop", loaded.Text);
        for (int i = 0; i < inputs.Length; i++)
        {
            Assert.Equal(inputs[i].Gpr, outputs[i].Gpr);
            Assert.Equal(inputs[i].Rflags | 2, outputs[i].Rflags);
            Assert.Equal(inputs[i].Xmm, outputs[i].Xmm);
            Assert.Equal(inputs[i].Scratch, outputs[i].Scratch);
            Assert.Equal(inputs[i].StackWindow, outputs[i].StackWindow);
        }
    }

    [Fact]
    public void Run_Add64_MatchesManagedSumAndFlags()
    {
        var rng = new Random(2);
        var inputs = Enumerable.Range(0, 256).Select(_ => RandomState(rng, NativeRunner.Instance.RegionBase)).ToArray();
        inputs[0].Gpr[0] = ulong.MaxValue; inputs[0].Gpr[1] = 1;
        inputs[1].Gpr[0] = long.MaxValue; inputs[1].Gpr[1] = 1;
        inputs[2].Gpr[0] = 0; inputs[2].Gpr[1] = 0;
        var outputs = RunMany(a => a.AddInstruction(Instruction.Create(Code.Add_rm64_r64, Register.RAX, Register.RCX)), inputs, out var loaded);
        Assert.Equal("add rax,rcx", loaded.Text);
        for (int i = 0; i < inputs.Length; i++)
        {
            ulong x = inputs[i].Gpr[0], y = inputs[i].Gpr[1], sum = unchecked(x + y);
            ulong f = outputs[i].Rflags;
            Assert.Equal(sum, outputs[i].Gpr[0]);
            Assert.Equal(sum < x, (f & MachineState.CF) != 0);
            Assert.Equal(sum == 0, (f & MachineState.ZF) != 0);
            Assert.Equal((long)sum < 0, (f & MachineState.SF) != 0);
            Assert.Equal(((x ^ sum) & (y ^ sum)) >> 63 != 0, (f & MachineState.OF) != 0);
            Assert.Equal(((x ^ y ^ sum) & 0x10) != 0, (f & MachineState.AF) != 0);
            Assert.Equal(System.Numerics.BitOperations.PopCount(sum & 0xFF) % 2 == 0, (f & MachineState.PF) != 0);
            Assert.Equal(inputs[i].Gpr[1..], outputs[i].Gpr[1..]);
        }
    }

    [Fact]
    public void Run_StoreAndPush_WriteScratchAndStackAtTheSameAddressesAsGiven()
    {
        var rng = new Random(3);
        ulong regionBase = NativeRunner.Instance.RegionBase;
        var input = RandomState(rng, regionBase);
        input.Gpr[3] = MachineState.ScratchAddress(regionBase, 0x100); // rbx
        var outputs = RunMany(a =>
        {
            a.AddInstruction(Instruction.Create(Code.Mov_rm64_r64, new MemoryOperand(Register.RBX, 8), Register.RCX));
            a.AddInstruction(Instruction.Create(Code.Push_r64, Register.RDX));
            a.AddInstruction(Instruction.Create(Code.Movdqu_xmm_xmmm128, Register.XMM3, new MemoryOperand(Register.RBX, 0x40)));
        }, [input], out _);
        var o = outputs[0];
        Assert.Equal(input.Gpr[1], BitConverter.ToUInt64(o.Scratch, 0x108));
        Assert.Equal(input.Gpr[4] - 8, o.Gpr[4]);
        Assert.Equal(input.Gpr[2], BitConverter.ToUInt64(o.StackWindow, RegionLayout.InitialRspOffset - RegionLayout.StackWindowOffset - 8));
        Assert.Equal(BitConverter.ToUInt64(input.Scratch, 0x140), (ulong)o.Xmm[3]);
        Assert.Equal(BitConverter.ToUInt64(input.Scratch, 0x148), (ulong)(o.Xmm[3] >> 64));
    }

    [Fact]
    public void Run_FlagsOutsideTheInputSet_AreRefused()
    {
        var input = RandomState(new Random(4), NativeRunner.Instance.RegionBase);
        input.Rflags = 1UL << 8; // TF would trap natively
        lock (NativeRunner.Instance.Gate)
        {
            NativeRunner.Instance.Load(a => a.nop());
            Assert.Throws<ArgumentException>(() => NativeRunner.Instance.Run(input));
        }
    }
}
