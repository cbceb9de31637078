using System.Runtime.CompilerServices;
using System.Numerics;
using Iced.Intel;
using static ToyVmm.Cpu.Operands;

namespace ToyVmm.Cpu.Ops;

/// <summary>bt, bts, btr, btc (register and memory bit strings; lock forms atomic), bsf, bsr, tzcnt, lzcnt, popcnt.</summary>
internal static unsafe class Bits
{
    // X: 0 bt, 1 bts, 2 btr, 3 btc. Y bit 0: offset is an immediate; bit 1: memory operand.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Bt<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        long off = (op->Y & 1) != 0 ? op->Imm : (op->Y & 2) != 0 ? Reg.SignExtend<T>(Reg.Get<T>(s, op->R)) : (long)Reg.Get<T>(s, op->R);
        int kind = op->X;
        bool cf;
        if ((op->Y & 2) == 0)
        {
            int bit = (int)(off & (T.Bits - 1));
            ulong d = Reg.Get<T>(s, op->R2);
            cf = ((d >> bit) & 1) != 0;
            if (kind != 0) Reg.Set<T>(s, op->R2, Apply(d, bit, kind));
        }
        else
        {
            ulong ea = Mem.Ea(s, op);
            int bit;
            if ((op->Y & 1) != 0) bit = (int)(off & (T.Bits - 1));
            else
            {
                ea += (ulong)((off >> (T.Log + 3)) << T.Log);
                bit = (int)(off & (T.Bits - 1));
            }
            if (kind == 0) cf = ((Mem.Read<T>(s, ea) >> bit) & 1) != 0;
            else
            {
                byte* p = Mem.LockedPtr(s, ea, T.Bits / 8, out bool trapped);
                if (p == null)
                {
                    Atomic.EnterSplitLock(s);
                    try
                    {
                        ulong d = Mem.Read<T>(s, ea);
                        cf = ((d >> bit) & 1) != 0;
                        Mem.Write<T>(s, ea, Apply(d, bit, kind));
                    }
                    finally { Atomic.ExitSplitLock(); }
                }
                else
                {
                    while (true)
                    {
                        ulong d = Atomic.Load<T>(p);
                        if (Atomic.Cas<T>(p, Apply(d, bit, kind), d) == d) { cf = ((d >> bit) & 1) != 0; break; }
                    }
                    if (trapped) Mem.LockedWriteDone(s, ea, T.Bits / 8);
                }
            }
        }
        Flags.Merge(s, cf ? Flags.CF : 0, Flags.CF);
        return Exec.Next(s, op);
    }

    private static ulong Apply(ulong d, int bit, int kind) => kind switch
    {
        1 => d | (1UL << bit),
        2 => d & ~(1UL << bit),
        _ => d ^ (1UL << bit),
    };

    private static ulong Src<T>(CpuState* s, Op* op) where T : struct, ISz =>
        op->Y == 0 ? Reg.Get<T>(s, op->R2) : Mem.Read<T>(s, Mem.Ea(s, op));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Bsf<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        ulong x = Src<T>(s, op);
        if (x == 0) { Flags.Merge(s, Flags.ZF, Flags.Arith); return Exec.Next(s, op); }
        Reg.Set<T>(s, op->R, (ulong)BitOperations.TrailingZeroCount(x));
        Flags.Merge(s, 0, Flags.Arith);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Bsr<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        ulong x = Src<T>(s, op);
        if (x == 0) { Flags.Merge(s, Flags.ZF, Flags.Arith); return Exec.Next(s, op); }
        Reg.Set<T>(s, op->R, (ulong)(63 - BitOperations.LeadingZeroCount(x)));
        Flags.Merge(s, 0, Flags.Arith);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Tzcnt<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        ulong x = Src<T>(s, op);
        ulong r = x == 0 ? (ulong)T.Bits : (ulong)BitOperations.TrailingZeroCount(x);
        Reg.Set<T>(s, op->R, r);
        Flags.Merge(s, (x == 0 ? Flags.CF : 0) | (r == 0 ? Flags.ZF : 0), Flags.Arith);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Lzcnt<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        ulong x = Src<T>(s, op);
        ulong r = (ulong)(BitOperations.LeadingZeroCount(x) - (64 - T.Bits));
        Reg.Set<T>(s, op->R, r);
        Flags.Merge(s, (x == 0 ? Flags.CF : 0) | (r == 0 ? Flags.ZF : 0), Flags.Arith);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Popcnt<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        ulong x = Src<T>(s, op);
        Reg.Set<T>(s, op->R, (ulong)BitOperations.PopCount(x));
        Flags.Merge(s, x == 0 ? Flags.ZF : 0, Flags.Arith);
        return Exec.Next(s, op);
    }

    private static bool BindBt(in Instruction ins, Op* op, byte kind)
    {
        int lg = Log(Size(ins, 0));
        op->X = kind;
        if (IsReg(ins, 0)) op->R2 = Gpr(ins.Op0Register);
        else { Operands.Mem(ins, op); op->Y |= 2; }
        if (IsReg(ins, 1)) op->R = Gpr(ins.Op1Register);
        else { op->Y |= 1; op->Imm = (int)(ins.GetImmediate(1) & 0xFF); }
        op->H = lg switch { 1 => &Bt<S16>, 2 => &Bt<S32>, _ => &Bt<S64> };
        return true;
    }

    private static bool BindScan(in Instruction ins, Op* op, int which)
    {
        int lg = Log(Size(ins, 0));
        op->R = Gpr(ins.Op0Register);
        if (IsReg(ins, 1)) op->R2 = Gpr(ins.Op1Register); else { Operands.Mem(ins, op); op->Y = 1; }
        op->H = (which, lg) switch
        {
            (0, 1) => &Bsf<S16>, (0, 2) => &Bsf<S32>, (0, _) => &Bsf<S64>,
            (1, 1) => &Bsr<S16>, (1, 2) => &Bsr<S32>, (1, _) => &Bsr<S64>,
            (2, 1) => &Tzcnt<S16>, (2, 2) => &Tzcnt<S32>, (2, _) => &Tzcnt<S64>,
            (3, 1) => &Lzcnt<S16>, (3, 2) => &Lzcnt<S32>, (3, _) => &Lzcnt<S64>,
            (_, 1) => &Popcnt<S16>, (_, 2) => &Popcnt<S32>, (_, _) => &Popcnt<S64>,
        };
        return true;
    }

    public static void Register()
    {
        Binder.Add(Mnemonic.Bt, (in Instruction i, Op* o) => BindBt(i, o, 0));
        Binder.Add(Mnemonic.Bts, (in Instruction i, Op* o) => BindBt(i, o, 1));
        Binder.Add(Mnemonic.Btr, (in Instruction i, Op* o) => BindBt(i, o, 2));
        Binder.Add(Mnemonic.Btc, (in Instruction i, Op* o) => BindBt(i, o, 3));
        Binder.Add(Mnemonic.Bsf, (in Instruction i, Op* o) => BindScan(i, o, 0));
        Binder.Add(Mnemonic.Bsr, (in Instruction i, Op* o) => BindScan(i, o, 1));
        Binder.Add(Mnemonic.Tzcnt, (in Instruction i, Op* o) => BindScan(i, o, 2));
        Binder.Add(Mnemonic.Lzcnt, (in Instruction i, Op* o) => BindScan(i, o, 3));
        Binder.Add(Mnemonic.Popcnt, (in Instruction i, Op* o) => BindScan(i, o, 4));
    }
}
