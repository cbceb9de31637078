using System.Runtime.CompilerServices;
using Iced.Intel;
using static ToyVmm.Cpu.Operands;

namespace ToyVmm.Cpu.Ops;

/// <summary>mul, imul (one, two and three operands), div, idiv (#DE on zero divisor or quotient overflow).</summary>
internal static unsafe class MulDiv
{
    private static ulong Src<T>(CpuState* s, Op* op) where T : struct, ISz =>
        op->Y == 0 ? Reg.Get<T>(s, op->R2) : Mem.Read<T>(s, Mem.Ea(s, op));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Mul<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        ulong x = Src<T>(s, op);
        ulong lo, hi;
        if (T.Bits == 8) { ulong r = (byte)s->Regs[0] * x; *(ushort*)&s->Regs[0] = (ushort)r; lo = r & 0xFF; hi = r >> 8; }
        else if (T.Bits == 64) { hi = Math.BigMul(s->Regs[0], x, out lo); s->Regs[0] = lo; s->Regs[2] = hi; }
        else
        {
            ulong r = Reg.Get<T>(s, 0) * x;
            lo = r & T.Mask;
            hi = r >> T.Bits;
            Reg.Set<T>(s, 0, lo);
            Reg.Set<T>(s, 2, hi);
        }
        Flags.SetResCO<T>(s, lo, hi != 0, hi != 0);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Imul1<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        long x = Reg.SignExtend<T>(Src<T>(s, op));
        long a = Reg.SignExtend<T>(Reg.Get<T>(s, 0));
        bool ovf;
        ulong lo;
        if (T.Bits == 64)
        {
            long hi = Math.BigMul(a, x, out long l);
            lo = (ulong)l;
            s->Regs[0] = lo;
            s->Regs[2] = (ulong)hi;
            ovf = hi != (l >> 63);
        }
        else
        {
            long r = a * x;
            lo = (ulong)r & T.Mask;
            ovf = Reg.SignExtend<T>((ulong)r) != r;
            if (T.Bits == 8) *(ushort*)&s->Regs[0] = (ushort)r;
            else { Reg.Set<T>(s, 0, (ulong)r); Reg.Set<T>(s, 2, (ulong)(r >> T.Bits)); }
        }
        Flags.SetResCO<T>(s, lo, ovf, ovf);
        return Exec.Next(s, op);
    }

    // imul r, r/m [, imm]: X = 1 when an immediate is the multiplier.
    // The memory form (Y = 1 for a memory operand): the TLB hit without a call, so the handler
    // saves no callee-saved registers; a miss or a page-crossing read goes to Imul2Slow.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Imul2<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        long a = op->X == 1 ? Reg.SignExtend<T>((ulong)(long)op->Imm) : Reg.SignExtend<T>(Reg.Get<T>(s, op->R));
        ulong b;
        if (op->Y == 0) b = Reg.Get<T>(s, op->R2);
        else if (!Mem.TryRead<T>(s, Mem.Ea(s, op), out b)) return Imul2Slow<T>(s, op);
        return Imul2Finish<T>(s, op, a, Reg.SignExtend<T>(b));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* Imul2Slow<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        long a = op->X == 1 ? Reg.SignExtend<T>((ulong)(long)op->Imm) : Reg.SignExtend<T>(Reg.Get<T>(s, op->R));
        return Imul2Finish<T>(s, op, a, Reg.SignExtend<T>(Src<T>(s, op)));
    }

    /// <summary>imul r, r and imul r, r, imm: no memory operand, so no call and no saved registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Imul2R<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        long a = op->X == 1 ? Reg.SignExtend<T>((ulong)(long)op->Imm) : Reg.SignExtend<T>(Reg.Get<T>(s, op->R));
        return Imul2Finish<T>(s, op, a, Reg.SignExtend<T>(Reg.Get<T>(s, op->R2)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Op* Imul2Finish<T>(CpuState* s, Op* op, long a, long b) where T : struct, ISz
    {
        ulong lo;
        bool ovf;
        if (T.Bits == 64)
        {
            long hi = Math.BigMul(a, b, out long l);
            lo = (ulong)l;
            ovf = hi != (l >> 63);
        }
        else
        {
            long r = a * b;
            lo = (ulong)r;
            ovf = Reg.SignExtend<T>((ulong)r) != r;
        }
        Reg.Set<T>(s, op->R, lo);
        Flags.SetResCO<T>(s, lo, ovf, ovf);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Div<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        ulong x = Src<T>(s, op);
        if (x == 0) throw new GuestFault(Vec.DE);
        if (T.Bits == 64)
        {
            ulong hi = s->Regs[2], lo = s->Regs[0];
            if (hi == 0) { s->Regs[0] = lo / x; s->Regs[2] = lo % x; }
            else
            {
                if (hi >= x) throw new GuestFault(Vec.DE);
                var n = new UInt128(hi, lo);
                s->Regs[0] = (ulong)(n / x);
                s->Regs[2] = (ulong)(n % x);
            }
        }
        else
        {
            ulong n = T.Bits == 8 ? *(ushort*)&s->Regs[0] : (Reg.Get<T>(s, 2) << T.Bits) | Reg.Get<T>(s, 0);
            ulong q = n / x, r = n % x;
            if (q > T.Mask) throw new GuestFault(Vec.DE);
            if (T.Bits == 8) *(ushort*)&s->Regs[0] = (ushort)(q | r << 8);
            else { Reg.Set<T>(s, 0, q); Reg.Set<T>(s, 2, r); }
        }
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Idiv<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        long x = Reg.SignExtend<T>(Src<T>(s, op));
        if (x == 0) throw new GuestFault(Vec.DE);
        if (T.Bits == 64)
        {
            var n = (Int128)new UInt128(s->Regs[2], s->Regs[0]);
            if (n == long.MinValue && x == -1) throw new GuestFault(Vec.DE);
            Int128 q = n / x, r = n % x;
            if (q > long.MaxValue || q < long.MinValue) throw new GuestFault(Vec.DE);
            s->Regs[0] = (ulong)(long)q;
            s->Regs[2] = (ulong)(long)r;
        }
        else
        {
            long n = T.Bits == 8 ? (short)*(ushort*)&s->Regs[0] : (long)((Reg.Get<T>(s, 2) << T.Bits) | Reg.Get<T>(s, 0)) << (64 - 2 * T.Bits) >> (64 - 2 * T.Bits);
            if (x == -1 && n == long.MinValue) throw new GuestFault(Vec.DE);
            long q = n / x, r = n % x;
            if (Reg.SignExtend<T>((ulong)q) != q) throw new GuestFault(Vec.DE);
            if (T.Bits == 8) *(ushort*)&s->Regs[0] = (ushort)((byte)q | (byte)r << 8);
            else { Reg.Set<T>(s, 0, (ulong)q); Reg.Set<T>(s, 2, (ulong)r); }
        }
        return Exec.Next(s, op);
    }

    private static void SrcOperand(in Instruction ins, Op* op, int i)
    {
        if (IsReg(ins, i)) { op->R2 = Gpr(ins.GetOpRegister(i)); op->Y = 0; }
        else { Operands.Mem(ins, op); op->Y = 1; }
    }

    private static bool BindOne(in Instruction ins, Op* op, int which)
    {
        int lg = Log(Size(ins, 0));
        SrcOperand(ins, op, 0);
        op->H = (which, lg) switch
        {
            (0, 0) => &Mul<S8>, (0, 1) => &Mul<S16>, (0, 2) => &Mul<S32>, (0, _) => &Mul<S64>,
            (1, 0) => &Imul1<S8>, (1, 1) => &Imul1<S16>, (1, 2) => &Imul1<S32>, (1, _) => &Imul1<S64>,
            (2, 0) => &Div<S8>, (2, 1) => &Div<S16>, (2, 2) => &Div<S32>, (2, _) => &Div<S64>,
            (_, 0) => &Idiv<S8>, (_, 1) => &Idiv<S16>, (_, 2) => &Idiv<S32>, (_, _) => &Idiv<S64>,
        };
        return true;
    }

    private static bool BindImul(in Instruction ins, Op* op)
    {
        if (ins.OpCount == 1) return BindOne(ins, op, 1);
        int lg = Log(Size(ins, 0));
        op->R = Gpr(ins.Op0Register);
        SrcOperand(ins, op, 1);
        if (ins.OpCount == 3) { op->X = 1; op->Imm = (int)Imm(ins, 2); }
        op->H = op->Y == 0
            ? lg switch { 1 => &Imul2R<S16>, 2 => &Imul2R<S32>, _ => &Imul2R<S64> }
            : lg switch { 1 => &Imul2<S16>, 2 => &Imul2<S32>, _ => &Imul2<S64> };
        return true;
    }

    public static void Register()
    {
        Binder.Add(Mnemonic.Mul, (in Instruction i, Op* o) => BindOne(i, o, 0));
        Binder.Add(Mnemonic.Imul, BindImul);
        Binder.Add(Mnemonic.Div, (in Instruction i, Op* o) => BindOne(i, o, 2));
        Binder.Add(Mnemonic.Idiv, (in Instruction i, Op* o) => BindOne(i, o, 3));
    }
}
