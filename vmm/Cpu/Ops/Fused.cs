using System.Runtime.CompilerServices;
using Iced.Intel;
using static ToyVmm.Cpu.Operands;

namespace ToyVmm.Cpu.Ops;

/// <summary>cmp or test as a type parameter of a fused compare-and-branch handler.</summary>
internal interface IFuse { static abstract bool IsCmp { get; } }
internal struct FCmp : IFuse { public static bool IsCmp => true; }
internal struct FTest : IFuse { public static bool IsCmp => false; }

/// <summary>
/// cmp/test followed by jcc in the same block, run by one handler bound to the cmp/test op.
/// Both ops stay in the block (indices, RipOff, quiet bits unchanged); the fused handler
/// compares (a memory operand is read with <c>CurOp</c> on the cmp/test op, so a fault
/// there gives its RIP and retired count), stores the lazy flags as cmp/test would, answers
/// the condition from its operands, then moves <c>CurOp</c> to the jcc op (quiet, counted
/// by the run loop or Exec.Chain as the second instruction) and branches as Control.Jcc does.
/// </summary>
internal static unsafe class Fused
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long Sx<T>(ulong v) where T : struct, ISz => (long)(v << (64 - T.Bits)) >> (64 - T.Bits);

    /// <summary>
    /// Whether condition <paramref name="cc"/> (a constant per handler) is answered from a cmp's or
    /// test's operands alone; the others (O, NO, P, NP after cmp; P, NP after test) go to
    /// Control.JccSlow, which reads the lazy flags.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Direct(int cc, bool isCmp) => isCmp ? (cc >> 1) is 1 or 2 or 3 or 4 or 6 or 7 : (cc >> 1) != 5;

    /// <summary>The condition after cmp d, x (operands truncated); <see cref="Direct"/> conditions only.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool SubCond<T>(int cc, ulong d, ulong x, ulong r) where T : struct, ISz
    {
        bool v = (cc >> 1) switch
        {
            1 => d < x,
            2 => d == x,
            3 => d <= x,
            4 => Sx<T>(r) < 0,
            6 => Sx<T>(d) < Sx<T>(x),
            _ => Sx<T>(d) <= Sx<T>(x),
        };
        return (cc & 1) != 0 ? !v : v;
    }

    /// <summary>The condition after test (result truncated); <see cref="Direct"/> conditions only.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool LogicCond<T>(int cc, ulong r) where T : struct, ISz
    {
        long v = Sx<T>(r);
        bool b = (cc >> 1) switch
        {
            0 or 1 => false,   // test clears OF and CF
            2 or 3 => v == 0,
            4 or 6 => v < 0,
            _ => v <= 0,
        };
        return (cc & 1) != 0 ? !b : b;
    }

    // The condition is a constant per handler (C), so the JIT reduces the selection to one
    // compare and branch on the operands, with no 0/1/-1 value in between.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Op* Branch<O, T, C>(CpuState* s, Op* op, ulong d, ulong x) where O : struct, IFuse where T : struct, ISz where C : struct, ICc
    {
        Op* j = op + 1;
        bool taken;
        if (O.IsCmp)
        {
            ulong r = d - x;
            Flags.Set<T>(s, Flags.Sub, r, d, x);
            s->CurOp = j;   // the cmp/test has retired; the jcc touches no memory
            if (!Direct(C.Cc, true)) return Control.JccSlow<C>(s, j);
            taken = SubCond<T>(C.Cc, d & T.Mask, x & T.Mask, r & T.Mask);
        }
        else
        {
            ulong r = d & x;
            Flags.SetLogic<T>(s, r);
            s->CurOp = j;
            if (!Direct(C.Cc, false)) return Control.JccSlow<C>(s, j);
            taken = LogicCond<T>(C.Cc, r & T.Mask);
        }
        return Exec.Branch(s, j, taken ? (ulong)j->Disp : Control.NextRip(s, j));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* RR<O, T, C>(CpuState* s, Op* op) where O : struct, IFuse where T : struct, ISz where C : struct, ICc
        => Branch<O, T, C>(s, op, Reg.Get<T>(s, op->R), Reg.Get<T>(s, op->R2));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* RI<O, T, C>(CpuState* s, Op* op) where O : struct, IFuse where T : struct, ISz where C : struct, ICc
        => Branch<O, T, C>(s, op, Reg.Get<T>(s, op->R), (ulong)(long)op->Imm);

    // Register first, memory second (cmp r, m; test m, r as bound by Alu.BindTest).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* RM<O, T, C>(CpuState* s, Op* op) where O : struct, IFuse where T : struct, ISz where C : struct, ICc
    {
        if (!Mem.TryRead<T>(s, Mem.Ea(s, op), out ulong x)) return RMSlow<O, T, C>(s, op);
        return Branch<O, T, C>(s, op, Reg.Get<T>(s, op->R), x);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* RMSlow<O, T, C>(CpuState* s, Op* op) where O : struct, IFuse where T : struct, ISz where C : struct, ICc
        => Branch<O, T, C>(s, op, Reg.Get<T>(s, op->R), Mem.Read<T>(s, Mem.Ea(s, op)));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* MR<O, T, C>(CpuState* s, Op* op) where O : struct, IFuse where T : struct, ISz where C : struct, ICc
    {
        if (!Mem.TryRead<T>(s, Mem.Ea(s, op), out ulong d)) return MRSlow<O, T, C>(s, op);
        return Branch<O, T, C>(s, op, d, Reg.Get<T>(s, op->R));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* MRSlow<O, T, C>(CpuState* s, Op* op) where O : struct, IFuse where T : struct, ISz where C : struct, ICc
        => Branch<O, T, C>(s, op, Mem.Read<T>(s, Mem.Ea(s, op)), Reg.Get<T>(s, op->R));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* MI<O, T, C>(CpuState* s, Op* op) where O : struct, IFuse where T : struct, ISz where C : struct, ICc
    {
        if (!Mem.TryRead<T>(s, Mem.Ea(s, op), out ulong d)) return MISlow<O, T, C>(s, op);
        return Branch<O, T, C>(s, op, d, (ulong)(long)op->Imm);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* MISlow<O, T, C>(CpuState* s, Op* op) where O : struct, IFuse where T : struct, ISz where C : struct, ICc
        => Branch<O, T, C>(s, op, Mem.Read<T>(s, Mem.Ea(s, op)), (ulong)(long)op->Imm);

    private const int FormRR = 0, FormRI = 1, FormRM = 2, FormMR = 3, FormMI = 4;

    /// <summary>
    /// Decode time: when <paramref name="cmp"/> (already bound into <paramref name="cmpOp"/>) is a
    /// cmp or test and <paramref name="jcc"/> a jcc right after it, rebinds the cmp/test op to the
    /// fused handler. Returns false (nothing changed) for any other pair.
    /// </summary>
    public static bool TryFuse(in Instruction cmp, Op* cmpOp, in Instruction jcc)
    {
        if (!jcc.IsJccShortOrNear || cmp.HasLockPrefix || cmp.OpCount != 2) return false;
        bool isCmp = cmp.Mnemonic == Mnemonic.Cmp;
        if (!isCmp && cmp.Mnemonic != Mnemonic.Test) return false;
        int form;
        if (IsReg(cmp, 0)) form = IsReg(cmp, 1) ? FormRR : IsMem(cmp, 1) ? FormRM : FormRI;
        else if (IsMem(cmp, 0)) form = IsReg(cmp, 1) ? (isCmp ? FormMR : FormRM) : FormMI;
        else return false;
        int cc = jcc.ConditionCode.ToCc();
        int lg = Log(Size(cmp, 0));
        var h = isCmp ? PickSize<FCmp>(lg, form, cc) : PickSize<FTest>(lg, form, cc);
        if (h == null) return false;
        cmpOp->H = h;
        return true;
    }

    private static delegate*<CpuState*, Op*, Op*> PickSize<O>(int lg, int form, int cc) where O : struct, IFuse
        => lg switch { 0 => Pick<O, S8>(form, cc), 1 => Pick<O, S16>(form, cc), 2 => Pick<O, S32>(form, cc), _ => Pick<O, S64>(form, cc) };

    private static delegate*<CpuState*, Op*, Op*> Pick<O, T>(int form, int cc) where O : struct, IFuse where T : struct, ISz
        => cc switch
        {
            0 => Form<O, T, Co>(form), 1 => Form<O, T, Cno>(form), 2 => Form<O, T, Cb>(form), 3 => Form<O, T, Cae>(form),
            4 => Form<O, T, Ce>(form), 5 => Form<O, T, Cne>(form), 6 => Form<O, T, Cbe>(form), 7 => Form<O, T, Ca>(form),
            8 => Form<O, T, Cs>(form), 9 => Form<O, T, Cns>(form), 10 => Form<O, T, Cp>(form), 11 => Form<O, T, Cnp>(form),
            12 => Form<O, T, Cl>(form), 13 => Form<O, T, Cge>(form), 14 => Form<O, T, Cle>(form), _ => Form<O, T, Cg>(form),
        };

    private static delegate*<CpuState*, Op*, Op*> Form<O, T, C>(int form) where O : struct, IFuse where T : struct, ISz where C : struct, ICc
        => form switch
        {
            FormRR => &RR<O, T, C>,
            FormRI => &RI<O, T, C>,
            FormRM => &RM<O, T, C>,
            FormMR => &MR<O, T, C>,
            _ => &MI<O, T, C>,
        };
}
