using System.Runtime.CompilerServices;
using Iced.Intel;
using static ToyVmm.Cpu.Operands;

namespace ToyVmm.Cpu.Ops;

/// <summary>A two-operand ALU operation: computes the result and records lazy flags.</summary>
internal unsafe interface IAluOp
{
    static abstract ulong Do<T>(CpuState* s, ulong d, ulong x) where T : struct, ISz;
    /// <summary>False for cmp and test, which only set flags.</summary>
    static abstract bool Writes { get; }
}

internal unsafe struct AddOp : IAluOp
{
    public static bool Writes => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Do<T>(CpuState* s, ulong d, ulong x) where T : struct, ISz { ulong r = d + x; Flags.Set<T>(s, Flags.Add, r, d, x); return r; }
}
internal unsafe struct OrOp : IAluOp
{
    public static bool Writes => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Do<T>(CpuState* s, ulong d, ulong x) where T : struct, ISz { ulong r = d | x; Flags.SetLogic<T>(s, r); return r; }
}
internal unsafe struct AdcOp : IAluOp
{
    public static bool Writes => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Do<T>(CpuState* s, ulong d, ulong x) where T : struct, ISz
    {
        ulong c = Flags.Carry(s) ? 1UL : 0;
        ulong r = d + x + c;
        Flags.Set<T>(s, Flags.Adc, r, d, x);
        s->LAux = c;
        return r;
    }
}
internal unsafe struct SbbOp : IAluOp
{
    public static bool Writes => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Do<T>(CpuState* s, ulong d, ulong x) where T : struct, ISz
    {
        ulong c = Flags.Carry(s) ? 1UL : 0;
        ulong r = d - x - c;
        Flags.Set<T>(s, Flags.Sbb, r, d, x);
        s->LAux = c;
        return r;
    }
}
internal unsafe struct AndOp : IAluOp
{
    public static bool Writes => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Do<T>(CpuState* s, ulong d, ulong x) where T : struct, ISz { ulong r = d & x; Flags.SetLogic<T>(s, r); return r; }
}
internal unsafe struct SubOp : IAluOp
{
    public static bool Writes => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Do<T>(CpuState* s, ulong d, ulong x) where T : struct, ISz { ulong r = d - x; Flags.Set<T>(s, Flags.Sub, r, d, x); return r; }
}
internal unsafe struct XorOp : IAluOp
{
    public static bool Writes => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Do<T>(CpuState* s, ulong d, ulong x) where T : struct, ISz { ulong r = d ^ x; Flags.SetLogic<T>(s, r); return r; }
}
internal unsafe struct CmpOp : IAluOp
{
    public static bool Writes => false;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Do<T>(CpuState* s, ulong d, ulong x) where T : struct, ISz { ulong r = d - x; Flags.Set<T>(s, Flags.Sub, r, d, x); return r; }
}
internal unsafe struct TestOp : IAluOp
{
    public static bool Writes => false;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Do<T>(CpuState* s, ulong d, ulong x) where T : struct, ISz { ulong r = d & x; Flags.SetLogic<T>(s, r); return r; }
}

/// <summary>add, or, adc, sbb, and, sub, xor, cmp, test in every operand form and size; lock forms are atomic.</summary>
internal static unsafe class Alu
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* RR<O, T>(CpuState* s, Op* op) where O : struct, IAluOp where T : struct, ISz
    {
        ulong r = O.Do<T>(s, Reg.Get<T>(s, op->R), Reg.Get<T>(s, op->R2));
        if (O.Writes) Reg.Set<T>(s, op->R, r);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* RI<O, T>(CpuState* s, Op* op) where O : struct, IAluOp where T : struct, ISz
    {
        ulong r = O.Do<T>(s, Reg.Get<T>(s, op->R), (ulong)(long)op->Imm);
        if (O.Writes) Reg.Set<T>(s, op->R, r);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* RM<O, T>(CpuState* s, Op* op) where O : struct, IAluOp where T : struct, ISz
    {
        if (!Mem.TryRead<T>(s, Mem.Ea(s, op), out ulong x)) return RMSlow<O, T>(s, op);
        ulong r = O.Do<T>(s, Reg.Get<T>(s, op->R), x);
        if (O.Writes) Reg.Set<T>(s, op->R, r);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* RMSlow<O, T>(CpuState* s, Op* op) where O : struct, IAluOp where T : struct, ISz
    {
        ulong x = Mem.Read<T>(s, Mem.Ea(s, op));
        ulong r = O.Do<T>(s, Reg.Get<T>(s, op->R), x);
        if (O.Writes) Reg.Set<T>(s, op->R, r);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* MR<O, T>(CpuState* s, Op* op) where O : struct, IAluOp where T : struct, ISz
    {
        ulong ea = Mem.Ea(s, op);
        if (!O.Writes)
        {
            if (!Mem.TryRead<T>(s, ea, out ulong d)) return MRSlow<O, T>(s, op);
            O.Do<T>(s, d, Reg.Get<T>(s, op->R));
            return Exec.Next(s, op);
        }
        byte* p = Mem.TryRmw(s, ea, T.Bits / 8);
        if (p == null) return MRSlow<O, T>(s, op);
        Atomic.StorePlain<T>(p, O.Do<T>(s, Atomic.LoadPlain<T>(p), Reg.Get<T>(s, op->R)));
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* MRSlow<O, T>(CpuState* s, Op* op) where O : struct, IAluOp where T : struct, ISz
    {
        ulong ea = Mem.Ea(s, op);
        ulong r = O.Do<T>(s, Mem.Read<T>(s, ea), Reg.Get<T>(s, op->R));
        if (O.Writes) Mem.Write<T>(s, ea, r);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* MI<O, T>(CpuState* s, Op* op) where O : struct, IAluOp where T : struct, ISz
    {
        ulong ea = Mem.Ea(s, op);
        if (!O.Writes)
        {
            if (!Mem.TryRead<T>(s, ea, out ulong d)) return MISlow<O, T>(s, op);
            O.Do<T>(s, d, (ulong)(long)op->Imm);
            return Exec.Next(s, op);
        }
        byte* p = Mem.TryRmw(s, ea, T.Bits / 8);
        if (p == null) return MISlow<O, T>(s, op);
        Atomic.StorePlain<T>(p, O.Do<T>(s, Atomic.LoadPlain<T>(p), (ulong)(long)op->Imm));
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* MISlow<O, T>(CpuState* s, Op* op) where O : struct, IAluOp where T : struct, ISz
    {
        ulong ea = Mem.Ea(s, op);
        ulong r = O.Do<T>(s, Mem.Read<T>(s, ea), (ulong)(long)op->Imm);
        if (O.Writes) Mem.Write<T>(s, ea, r);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* LockMR<O, T>(CpuState* s, Op* op) where O : struct, IAluOp where T : struct, ISz
    {
        Atomic.Rmw<O, T>(s, Mem.Ea(s, op), Reg.Get<T>(s, op->R));
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* LockMI<O, T>(CpuState* s, Op* op) where O : struct, IAluOp where T : struct, ISz
    {
        Atomic.Rmw<O, T>(s, Mem.Ea(s, op), (ulong)(long)op->Imm);
        return Exec.Next(s, op);
    }

    private static bool BindAlu<O>(in Instruction ins, Op* op) where O : struct, IAluOp
    {
        int lg = Log(Size(ins, 0));
        if (IsReg(ins, 0))
        {
            op->R = Gpr(ins.Op0Register);
            if (IsReg(ins, 1))
            {
                op->R2 = Gpr(ins.Op1Register);
                op->H = lg switch { 0 => &RR<O, S8>, 1 => &RR<O, S16>, 2 => &RR<O, S32>, _ => &RR<O, S64> };
            }
            else if (IsMem(ins, 1))
            {
                Operands.Mem(ins, op);
                op->H = lg switch { 0 => &RM<O, S8>, 1 => &RM<O, S16>, 2 => &RM<O, S32>, _ => &RM<O, S64> };
            }
            else
            {
                op->Imm = (int)Imm(ins, 1);
                op->H = lg switch { 0 => &RI<O, S8>, 1 => &RI<O, S16>, 2 => &RI<O, S32>, _ => &RI<O, S64> };
            }
            return true;
        }
        if (!IsMem(ins, 0)) return false;
        Operands.Mem(ins, op);
        bool locked = ins.HasLockPrefix && O.Writes;
        if (IsReg(ins, 1))
        {
            op->R = Gpr(ins.Op1Register);
            op->H = locked
                ? lg switch { 0 => &LockMR<O, S8>, 1 => &LockMR<O, S16>, 2 => &LockMR<O, S32>, _ => &LockMR<O, S64> }
                : lg switch { 0 => &MR<O, S8>, 1 => &MR<O, S16>, 2 => &MR<O, S32>, _ => &MR<O, S64> };
        }
        else
        {
            op->Imm = (int)Imm(ins, 1);
            op->H = locked
                ? lg switch { 0 => &LockMI<O, S8>, 1 => &LockMI<O, S16>, 2 => &LockMI<O, S32>, _ => &LockMI<O, S64> }
                : lg switch { 0 => &MI<O, S8>, 1 => &MI<O, S16>, 2 => &MI<O, S32>, _ => &MI<O, S64> };
        }
        return true;
    }

    public static void Register()
    {
        Binder.Add(Mnemonic.Add, BindAlu<AddOp>);
        Binder.Add(Mnemonic.Or, BindAlu<OrOp>);
        Binder.Add(Mnemonic.Adc, BindAlu<AdcOp>);
        Binder.Add(Mnemonic.Sbb, BindAlu<SbbOp>);
        Binder.Add(Mnemonic.And, BindAlu<AndOp>);
        Binder.Add(Mnemonic.Sub, BindAlu<SubOp>);
        Binder.Add(Mnemonic.Xor, BindAlu<XorOp>);
        Binder.Add(Mnemonic.Cmp, BindAlu<CmpOp>);
        Binder.Add(Mnemonic.Test, BindTest);
        Unary.Register();
    }

    // test r/m, r has the register second; the memory form is MR, never written.
    private static bool BindTest(in Instruction ins, Op* op)
    {
        int lg = Log(Size(ins, 0));
        if (IsMem(ins, 0))
        {
            Operands.Mem(ins, op);
            if (IsReg(ins, 1))
            {
                op->R = Gpr(ins.Op1Register);
                op->H = lg switch { 0 => &RM<TestOp, S8>, 1 => &RM<TestOp, S16>, 2 => &RM<TestOp, S32>, _ => &RM<TestOp, S64> };
            }
            else
            {
                op->Imm = (int)Imm(ins, 1);
                op->H = lg switch { 0 => &MI<TestOp, S8>, 1 => &MI<TestOp, S16>, 2 => &MI<TestOp, S32>, _ => &MI<TestOp, S64> };
            }
            return true;
        }
        return BindAlu<TestOp>(ins, op);
    }
}
