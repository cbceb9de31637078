using System.Numerics;
using System.Runtime.CompilerServices;

namespace ToyVmm.Cpu;

/// <summary>
/// Lazy arithmetic flags. A flag-setting op stores its result and inputs
/// (truncated to the operand size) and a kind; flags are computed only when
/// something reads them (jcc, setcc, cmov, adc, pushf, ...). Conditions after
/// cmp/sub/test/logic ops are answered straight from the operands.
/// </summary>
internal static unsafe class Flags
{
    public const ulong CF = 1, PF = 4, AF = 0x10, ZF = 0x40, SF = 0x80, TF = 0x100, IF = 0x200, DF = 0x400, OF = 0x800;
    public const ulong IOPL = 0x3000, NT = 0x4000, RF = 0x10000, AC = 0x40000, ID = 0x200000;
    public const ulong Arith = CF | PF | AF | ZF | SF | OF;
    /// <summary>Bits the guest can change with popf at CPL 0 (VM, VIF, VIP stay clear).</summary>
    public const ulong Writable = Arith | TF | IF | DF | IOPL | NT | RF | AC | ID;

    // Kinds (LKind >> 2).
    public const int Materialized = 0, Add = 1, Adc = 2, Sub = 3, Sbb = 4, Logic = 5, Inc = 6, Dec = 7, ResCO = 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Set<T>(CpuState* s, int kind, ulong res, ulong dst, ulong src) where T : struct, ISz
    {
        s->LKind = kind << 2 | T.Log;
        s->LRes = res & T.Mask;
        s->LDst = dst & T.Mask;
        s->LSrc = src & T.Mask;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void SetLogic<T>(CpuState* s, ulong res) where T : struct, ISz
    {
        s->LKind = Logic << 2 | T.Log;
        s->LRes = res & T.Mask;
    }

    /// <summary>Result-based flags with explicit CF and OF (shifts, multiplies).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void SetResCO<T>(CpuState* s, ulong res, bool cf, bool of) where T : struct, ISz
    {
        s->LKind = ResCO << 2 | T.Log;
        s->LRes = res & T.Mask;
        s->LAux = (cf ? 1UL : 0) | (of ? 2UL : 0);
    }

    /// <summary>The carry flag alone (adc, sbb, inc/dec preserving it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Carry(CpuState* s)
    {
        int k = s->LKind;
        if (k >> 2 == Sub) return s->LDst < s->LSrc;
        if (k >> 2 == Logic) return false;
        return (Compute(s) & CF) != 0;
    }

    /// <summary>The arithmetic flags as RFLAGS bits.</summary>
    public static ulong Compute(CpuState* s)
    {
        int k = s->LKind;
        if (k == 0) return s->Flags & Arith;
        int bits = 8 << (k & 3);
        ulong sign = 1UL << (bits - 1);
        ulong res = s->LRes, dst = s->LDst, src = s->LSrc;
        bool cf, of, af;
        switch (k >> 2)
        {
            case Add: cf = res < dst; of = (((dst ^ res) & (src ^ res)) & sign) != 0; af = ((dst ^ src ^ res) & 0x10) != 0; break;
            case Adc: cf = s->LAux != 0 ? res <= dst : res < dst; of = (((dst ^ res) & (src ^ res)) & sign) != 0; af = ((dst ^ src ^ res) & 0x10) != 0; break;
            case Sub: cf = dst < src; of = (((dst ^ src) & (dst ^ res)) & sign) != 0; af = ((dst ^ src ^ res) & 0x10) != 0; break;
            case Sbb: cf = s->LAux != 0 ? dst <= src : dst < src; of = (((dst ^ src) & (dst ^ res)) & sign) != 0; af = ((dst ^ src ^ res) & 0x10) != 0; break;
            case Inc: cf = s->LAux != 0; of = res == sign; af = (res & 0xF) == 0; break;
            case Dec: cf = s->LAux != 0; of = res == sign - 1; af = (res & 0xF) == 0xF; break;
            case ResCO: cf = (s->LAux & 1) != 0; of = (s->LAux & 2) != 0; af = false; break;
            default: cf = false; of = false; af = false; break; // Logic
        }
        ulong f = 0;
        if (cf) f |= CF;
        if (of) f |= OF;
        if (af) f |= AF;
        if (res == 0) f |= ZF;
        if ((res & sign) != 0) f |= SF;
        if ((BitOperations.PopCount(res & 0xFF) & 1) == 0) f |= PF;
        return f;
    }

    /// <summary>Architectural RFLAGS with the lazy bits materialised.</summary>
    public static ulong Read(CpuState* s) => (s->Flags & ~Arith) | Compute(s) | 2;

    /// <summary>Replaces RFLAGS (arithmetic bits become the stored ones).</summary>
    public static void Write(CpuState* s, ulong value)
    {
        s->Flags = (value & Writable) | 2;
        s->LKind = 0;
    }

    /// <summary>Replaces only the arithmetic bits in <paramref name="mask"/>, keeping the others.</summary>
    public static void Merge(CpuState* s, ulong value, ulong mask)
    {
        ulong f = Read(s);
        s->Flags = (f & ~mask) | (value & mask);
        s->LKind = 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long Sx(ulong v, int k)
    {
        int sh = 64 - (8 << (k & 3));
        return (long)(v << sh) >> sh;
    }

    /// <summary>Evaluates condition code <paramref name="cc"/> (the low nibble of jcc/setcc/cmovcc).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Cond(CpuState* s, int cc)
    {
        int r = CondFast(s, cc);
        return r >= 0 ? r != 0 : Slow(s, cc);
    }

    /// <summary>
    /// <see cref="Cond"/> without the materialising fallback: 1 or 0, or -1 when the answer
    /// needs <see cref="Slow"/> (lets a handler keep its fast path free of calls).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int CondFast(CpuState* s, int cc)
    {
        int k = s->LKind;
        bool r;
        if (k >> 2 == Sub)
        {
            ulong d = s->LDst, x = s->LSrc;
            switch (cc >> 1)
            {
                case 1: r = d < x; break;
                case 2: r = d == x; break;
                case 3: r = d <= x; break;
                case 4: r = Sx(s->LRes, k) < 0; break;
                case 6: r = Sx(d, k) < Sx(x, k); break;
                case 7: r = Sx(d, k) <= Sx(x, k); break;
                default: return -1;
            }
            return (r ^ ((cc & 1) != 0)) ? 1 : 0;
        }
        if (k >> 2 == Logic)
        {
            long v = Sx(s->LRes, k);
            switch (cc >> 1)
            {
                case 0: r = false; break;
                case 1: r = false; break;
                case 2: r = v == 0; break;
                case 3: r = v == 0; break;
                case 4: r = v < 0; break;
                case 6: r = v < 0; break;
                case 7: r = v <= 0; break;
                default: return -1;
            }
            return (r ^ ((cc & 1) != 0)) ? 1 : 0;
        }
        return -1;
    }

    public static bool Slow(CpuState* s, int cc)
    {
        ulong f = Compute(s);
        bool r;
        switch (cc >> 1)
        {
            case 0: r = (f & OF) != 0; break;
            case 1: r = (f & CF) != 0; break;
            case 2: r = (f & ZF) != 0; break;
            case 3: r = (f & (CF | ZF)) != 0; break;
            case 4: r = (f & SF) != 0; break;
            case 5: r = (f & PF) != 0; break;
            case 6: r = ((f & SF) != 0) != ((f & OF) != 0); break;
            default: r = (f & ZF) != 0 || (((f & SF) != 0) != ((f & OF) != 0)); break;
        }
        return r ^ ((cc & 1) != 0);
    }
}
