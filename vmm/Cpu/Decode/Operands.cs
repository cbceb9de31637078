using Iced.Intel;

namespace ToyVmm.Cpu;

/// <summary>Decode-time helpers that turn Iced operands into <see cref="Op"/> fields.</summary>
internal static unsafe class Operands
{
    /// <summary>Register operand encoding: index 0..15, or the byte offset for an 8-bit register.</summary>
    public static byte Gpr(Register r)
    {
        if (r >= Register.AL && r <= Register.R15L)
        {
            if (r >= Register.AH && r <= Register.BH) return (byte)((r - Register.AH) * 8 + 1);
            int n = r - Register.AL;
            if (n >= 8) n -= 4;      // SPL.. follow AH..BH in Iced's enum
            return (byte)(n * 8);
        }
        return (byte)r.GetNumber();
    }

    public static bool IsGpr(Register r) => r.IsGPR();

    /// <summary>Operand size in bytes of operand <paramref name="i"/> (register or memory).</summary>
    public static int Size(in Instruction ins, int i)
    {
        var k = ins.GetOpKind(i);
        if (k == OpKind.Register) return ins.GetOpRegister(i).GetSize();
        if (k == OpKind.Memory) return ins.MemorySize.GetSize();
        return 0;
    }

    public static bool IsReg(in Instruction ins, int i) => ins.GetOpKind(i) == OpKind.Register;
    public static bool IsMem(in Instruction ins, int i) => ins.GetOpKind(i) == OpKind.Memory;
    public static bool IsImm(in Instruction ins, int i)
    {
        var k = ins.GetOpKind(i);
        return k is OpKind.Immediate8 or OpKind.Immediate16 or OpKind.Immediate32 or OpKind.Immediate64
            or OpKind.Immediate8to16 or OpKind.Immediate8to32 or OpKind.Immediate8to64 or OpKind.Immediate32to64;
    }

    /// <summary>Fills the memory-operand fields (base, index, scale, displacement, FS/GS).</summary>
    public static void Mem(in Instruction ins, Op* op, bool ignoreSegment = false)
    {
        if (ins.IsIPRelativeMemoryOperand)
        {
            op->B = CpuState.ZeroReg;
            op->I = CpuState.ZeroReg;
            op->Disp = (long)ins.IPRelativeMemoryAddress;
        }
        else
        {
            op->B = ins.MemoryBase == Register.None ? (byte)CpuState.ZeroReg : (byte)ins.MemoryBase.GetNumber();
            op->I = ins.MemoryIndex == Register.None ? (byte)CpuState.ZeroReg : (byte)ins.MemoryIndex.GetNumber();
            op->Disp = (long)ins.MemoryDisplacement64;
        }
        op->Scale = (byte)(ins.MemoryIndexScale switch { 2 => 1, 4 => 2, 8 => 3, _ => 0 });
        op->Seg = ignoreSegment ? (byte)0 : (byte)(ins.MemorySegment switch { Register.FS => 1, Register.GS => 2, _ => 0 });
    }

    /// <summary>Immediate operand <paramref name="i"/> sign-extended to 64 bits (as x86 does for 64-bit operands).</summary>
    public static long Imm(in Instruction ins, int i)
    {
        var k = ins.GetOpKind(i);
        ulong v = ins.GetImmediate(i);
        return k switch
        {
            OpKind.Immediate8 => (long)(byte)v,
            OpKind.Immediate16 => (long)(ushort)v,
            OpKind.Immediate32 => (long)(uint)v,
            _ => (long)v,
        };
    }

    /// <summary>
    /// Picks the handler of a size-generic family. <paramref name="h"/> is indexed by log2 of the
    /// operand size in bytes (8, 16, 32, 64 bits).
    /// </summary>
    public static int Log(int bytes) => bytes switch { 1 => 0, 2 => 1, 4 => 2, 8 => 3, _ => -1 };
}
