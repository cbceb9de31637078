using System.Runtime.CompilerServices;
using Iced.Intel;
using static ToyVmm.Cpu.Operands;

namespace ToyVmm.Cpu.Ops;

/// <summary>shl/sal, shr, sar, rol, ror, rcl, rcr, shld, shrd by 1, imm8 or CL; a zero count leaves flags alone.</summary>
internal static unsafe class Shifts
{
    // X: 0 shl, 1 shr, 2 sar, 3 rol, 4 ror, 5 rcl, 6 rcr. Y bit 0: count from CL; bit 1: memory operand.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Count<T>(CpuState* s, Op* op) where T : struct, ISz =>
        ((op->Y & 1) != 0 ? (int)(byte)s->Regs[1] : op->Imm) & (T.Bits == 64 ? 63 : 31);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Shift<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        bool mem = (op->Y & 2) != 0;
        ulong ea = mem ? Mem.Ea(s, op) : 0;
        ulong d = mem ? Mem.Read<T>(s, ea) : Reg.Get<T>(s, op->R);
        int n = Count<T>(s, op);
        if (n == 0)
        {
            if (!mem && T.Bits == 32) Reg.Set<T>(s, op->R, d);
            return Exec.Next(s, op);
        }
        ulong r;
        int bits = T.Bits;
        ulong sign = Reg.SignBit<T>();
        switch (op->X)
        {
            case 0:
            {
                r = n >= 64 ? 0 : d << n;
                bool cf = n <= bits && ((d << (n - 1)) & sign) != 0;
                Flags.SetResCO<T>(s, r, cf, ((r & sign) != 0) != cf);
                break;
            }
            case 1:
            {
                r = d >> n;
                bool cf = ((d >> (n - 1)) & 1) != 0;
                Flags.SetResCO<T>(s, r, cf, (d & sign) != 0);
                break;
            }
            case 2:
            {
                long sx = Reg.SignExtend<T>(d);
                r = (ulong)(sx >> n);
                Flags.SetResCO<T>(s, r, ((sx >> (n - 1)) & 1) != 0, false);
                break;
            }
            case 3:
            {
                int k = n & (bits - 1);
                r = k == 0 ? d : ((d << k) | (d >> (bits - k))) & T.Mask;
                bool cf = (r & 1) != 0;
                Flags.Merge(s, (cf ? Flags.CF : 0) | (((r & sign) != 0) != cf ? Flags.OF : 0), Flags.CF | Flags.OF);
                break;
            }
            case 4:
            {
                int k = n & (bits - 1);
                r = k == 0 ? d : ((d >> k) | (d << (bits - k))) & T.Mask;
                bool cf = (r & sign) != 0;
                bool of = cf != ((r & (sign >> 1)) != 0);
                Flags.Merge(s, (cf ? Flags.CF : 0) | (of ? Flags.OF : 0), Flags.CF | Flags.OF);
                break;
            }
            default:
            {
                // rcl / rcr: rotate through carry, one bit at a time (rare).
                bool cf = Flags.Carry(s);
                int k = n % (bits + 1);
                r = d;
                for (int i = 0; i < k; i++)
                {
                    if (op->X == 5)
                    {
                        bool out1 = (r & sign) != 0;
                        r = ((r << 1) | (cf ? 1UL : 0)) & T.Mask;
                        cf = out1;
                    }
                    else
                    {
                        bool out1 = (r & 1) != 0;
                        r = (r >> 1) | (cf ? sign : 0);
                        cf = out1;
                    }
                }
                bool of = op->X == 5 ? ((r & sign) != 0) != cf : ((r & sign) != 0) != ((r & (sign >> 1)) != 0);
                Flags.Merge(s, (cf ? Flags.CF : 0) | (of ? Flags.OF : 0), Flags.CF | Flags.OF);
                break;
            }
        }
        if (mem) Mem.Write<T>(s, ea, r); else Reg.Set<T>(s, op->R, r);
        return Exec.Next(s, op);
    }

    // shld / shrd r/m, r, imm8|CL. X: 0 shld, 1 shrd.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* DoubleShift<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        bool mem = (op->Y & 2) != 0;
        ulong ea = mem ? Mem.Ea(s, op) : 0;
        ulong d = mem ? Mem.Read<T>(s, ea) : Reg.Get<T>(s, op->R2);
        ulong x = Reg.Get<T>(s, op->R);
        int n = Count<T>(s, op);
        if (n == 0)
        {
            if (!mem && T.Bits == 32) Reg.Set<T>(s, op->R2, d);
            return Exec.Next(s, op);
        }
        int bits = T.Bits;
        ulong sign = Reg.SignBit<T>();
        ulong r;
        bool cf;
        if (T.Bits == 16 && n > 16)
        {
            // Undefined result; compute over the 32-bit concatenation like hardware commonly does.
            ulong cat = op->X == 0 ? (d << 16 | x) : (x << 16 | d);
            r = op->X == 0 ? (cat << n >> 16) & 0xFFFF : (cat >> n) & 0xFFFF;
            cf = op->X == 0 ? ((cat << (n - 1)) & 0x8000_0000) != 0 : ((cat >> (n - 1)) & 1) != 0;
        }
        else if (op->X == 0)
        {
            r = ((d << n) | (x >> (bits - n))) & T.Mask;
            cf = ((d >> (bits - n)) & 1) != 0;
        }
        else
        {
            r = ((d >> n) | (x << (bits - n))) & T.Mask;
            cf = ((d >> (n - 1)) & 1) != 0;
        }
        Flags.SetResCO<T>(s, r, cf, ((r ^ d) & sign) != 0);
        if (mem) Mem.Write<T>(s, ea, r); else Reg.Set<T>(s, op->R2, r);
        return Exec.Next(s, op);
    }

    private static bool Bind(in Instruction ins, Op* op, byte kind)
    {
        int lg = Log(Size(ins, 0));
        op->X = kind;
        if (IsReg(ins, 0)) op->R = Gpr(ins.Op0Register);
        else { Operands.Mem(ins, op); op->Y |= 2; }
        if (ins.OpCount < 2) op->Imm = 1;
        else if (IsReg(ins, 1)) op->Y |= 1;   // CL
        else op->Imm = (int)(ins.GetImmediate(1) & 0xFF);
        op->H = lg switch { 0 => &Shift<S8>, 1 => &Shift<S16>, 2 => &Shift<S32>, _ => &Shift<S64> };
        return true;
    }

    private static bool BindDouble(in Instruction ins, Op* op, byte kind)
    {
        int lg = Log(Size(ins, 0));
        op->X = kind;
        if (IsReg(ins, 0)) op->R2 = Gpr(ins.Op0Register);
        else { Operands.Mem(ins, op); op->Y |= 2; }
        op->R = Gpr(ins.Op1Register);
        if (IsReg(ins, 2)) op->Y |= 1; else op->Imm = (int)(ins.GetImmediate(2) & 0xFF);
        op->H = lg switch { 1 => &DoubleShift<S16>, 2 => &DoubleShift<S32>, _ => &DoubleShift<S64> };
        return true;
    }

    public static void Register()
    {
        Binder.Add(Mnemonic.Shl, (in Instruction i, Op* o) => Bind(i, o, 0));
        Binder.Add(Mnemonic.Sal, (in Instruction i, Op* o) => Bind(i, o, 0));
        Binder.Add(Mnemonic.Shr, (in Instruction i, Op* o) => Bind(i, o, 1));
        Binder.Add(Mnemonic.Sar, (in Instruction i, Op* o) => Bind(i, o, 2));
        Binder.Add(Mnemonic.Rol, (in Instruction i, Op* o) => Bind(i, o, 3));
        Binder.Add(Mnemonic.Ror, (in Instruction i, Op* o) => Bind(i, o, 4));
        Binder.Add(Mnemonic.Rcl, (in Instruction i, Op* o) => Bind(i, o, 5));
        Binder.Add(Mnemonic.Rcr, (in Instruction i, Op* o) => Bind(i, o, 6));
        Binder.Add(Mnemonic.Shld, (in Instruction i, Op* o) => BindDouble(i, o, 0));
        Binder.Add(Mnemonic.Shrd, (in Instruction i, Op* o) => BindDouble(i, o, 1));
    }
}
