using System.Runtime.CompilerServices;

namespace ToyVmm.Cpu.Ops;

/// <summary>A shift or rotate as a type parameter (shl, shr, sar, rol, ror), so each register handler is compiled for its operation.</summary>
internal interface IShiftKind { static abstract int Kind { get; } }
internal struct KShl : IShiftKind { public static int Kind => 0; }
internal struct KShr : IShiftKind { public static int Kind => 1; }
internal struct KSar : IShiftKind { public static int Kind => 2; }
internal struct KRol : IShiftKind { public static int Kind => 3; }
internal struct KRor : IShiftKind { public static int Kind => 4; }

/// <summary>Where a shift count comes from: the op's immediate (1 or imm8) or CL.</summary>
internal interface IShiftCount { static abstract bool FromCl { get; } }
internal struct CountImm : IShiftCount { public static bool FromCl => false; }
internal struct CountCl : IShiftCount { public static bool FromCl => true; }

/// <summary>
/// Register-only shl/shr/sar/rol/ror by 1, imm8 or CL without a call on the fast path, so the
/// handler saves no callee-saved registers. Same results and flags as <see cref="Shifts.Shift{T}"/>:
/// a zero count changes nothing (a 32-bit register is still zero-extended); a rotate replaces
/// only CF and OF, so it needs the other flags materialised: when they are not already
/// (lazy kind set) the merge happens in <see cref="RotateMerge{T}"/>, a call off the fast path.
/// </summary>
internal static unsafe partial class Shifts
{
    public static Op* ShiftR<K, C, T>(CpuState* s, Op* op) where K : struct, IShiftKind where C : struct, IShiftCount where T : struct, ISz
    {
        ulong d = Reg.Get<T>(s, op->R);
        int n = (C.FromCl ? (int)(byte)s->Regs[1] : op->Imm) & (T.Bits == 64 ? 63 : 31);
        if (n == 0)
        {
            if (T.Bits == 32) Reg.Set<T>(s, op->R, d);
            return Exec.Next(s, op);
        }
        ulong r;
        int bits = T.Bits;
        ulong sign = Reg.SignBit<T>();
        if (K.Kind == 0)
        {
            r = n >= 64 ? 0 : d << n;
            bool cf = n <= bits && ((d << (n - 1)) & sign) != 0;
            Flags.SetResCO<T>(s, r, cf, ((r & sign) != 0) != cf);
        }
        else if (K.Kind == 1)
        {
            r = d >> n;
            bool cf = ((d >> (n - 1)) & 1) != 0;
            Flags.SetResCO<T>(s, r, cf, (d & sign) != 0);
        }
        else if (K.Kind == 2)
        {
            long sx = Reg.SignExtend<T>(d);
            r = (ulong)(sx >> n);
            Flags.SetResCO<T>(s, r, ((sx >> (n - 1)) & 1) != 0, false);
        }
        else
        {
            int k = n & (bits - 1);
            bool cf, of;
            if (K.Kind == 3)
            {
                r = k == 0 ? d : ((d << k) | (d >> (bits - k))) & T.Mask;
                cf = (r & 1) != 0;
                of = ((r & sign) != 0) != cf;
            }
            else
            {
                r = k == 0 ? d : ((d >> k) | (d << (bits - k))) & T.Mask;
                cf = (r & sign) != 0;
                of = cf != ((r & (sign >> 1)) != 0);
            }
            ulong f = (cf ? Flags.CF : 0) | (of ? Flags.OF : 0);
            if (s->LKind != 0) return RotateMerge<T>(s, op, r, f);
            // Flags already materialised: Flags.Merge without the call.
            s->Flags = (s->Flags & ~(Flags.CF | Flags.OF)) | f | 2;
        }
        Reg.Set<T>(s, op->R, r);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* RotateMerge<T>(CpuState* s, Op* op, ulong r, ulong f) where T : struct, ISz
    {
        Flags.Merge(s, f, Flags.CF | Flags.OF);
        Reg.Set<T>(s, op->R, r);
        return Exec.Next(s, op);
    }

    private static delegate*<CpuState*, Op*, Op*> PickR(int kind, bool cl, int lg) => kind switch
    {
        0 => PickR<KShl>(cl, lg),
        1 => PickR<KShr>(cl, lg),
        2 => PickR<KSar>(cl, lg),
        3 => PickR<KRol>(cl, lg),
        4 => PickR<KRor>(cl, lg),
        _ => null,
    };

    private static delegate*<CpuState*, Op*, Op*> PickR<K>(bool cl, int lg) where K : struct, IShiftKind => cl
        ? lg switch { 0 => &ShiftR<K, CountCl, S8>, 1 => &ShiftR<K, CountCl, S16>, 2 => &ShiftR<K, CountCl, S32>, _ => &ShiftR<K, CountCl, S64> }
        : lg switch { 0 => &ShiftR<K, CountImm, S8>, 1 => &ShiftR<K, CountImm, S16>, 2 => &ShiftR<K, CountImm, S32>, _ => &ShiftR<K, CountImm, S64> };
}
