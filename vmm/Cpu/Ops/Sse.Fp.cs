using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Iced.Intel;
using static ToyVmm.Cpu.Operands;
using V = System.Runtime.Intrinsics.Vector128<byte>;

namespace ToyVmm.Cpu.Ops;

/// <summary>
/// Which lanes of an SSE floating-point operation to look at for the fast path, and whether the
/// operation can be inexact at all. <see cref="Quiet"/> is true when, under the default MXCSR,
/// the operation can raise no flag but PE: every operand lane is a normal number or zero (no
/// NaN, infinity or denormal) and every result lane a normal number well away from the
/// underflow threshold (or, for conversions to integers, not the "integer indefinite").
/// </summary>
internal interface IFpLanes
{
    static abstract bool Quiet(V a, V b, V r);
    /// <summary>True when the operation is exact whatever its inputs (compares, min/max, widening conversions).</summary>
    static abstract bool Exact { get; }
}

#pragma warning disable CS1591
internal static class Lane
{
    // Normal or zero (DE, IE and the special results are impossible from these).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool OrdD(ulong x) { ulong e = (x >> 52) & 0x7FF; return e != 0x7FF && (e != 0 || (x << 1) == 0); }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool OrdS(uint x) { uint e = (x >> 23) & 0xFF; return e != 0xFF && (e != 0 || (x << 1) == 0); }
    // Normal, exponent field at least 2: not tiny before or after rounding, not infinite or NaN.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool NormD(ulong x) => ((x >> 52) & 0x7FF) - 2 < 0x7FD;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool NormS(uint x) => ((x >> 23) & 0xFF) - 2 < 0xFD;
    public static ulong D(V v, int i) => v.AsUInt64().GetElement(i);
    public static uint S(V v, int i) => v.AsUInt32().GetElement(i);
}

internal struct Sd2 : IFpLanes { public static bool Exact => false; public static bool Quiet(V a, V b, V r) => Lane.OrdD(Lane.D(a, 0)) & Lane.OrdD(Lane.D(b, 0)) & Lane.NormD(Lane.D(r, 0)); }
internal struct Sd1 : IFpLanes { public static bool Exact => false; public static bool Quiet(V a, V b, V r) => Lane.OrdD(Lane.D(b, 0)) & Lane.NormD(Lane.D(r, 0)); }
internal struct SdCmp : IFpLanes { public static bool Exact => true; public static bool Quiet(V a, V b, V r) => Lane.OrdD(Lane.D(a, 0)) & Lane.OrdD(Lane.D(b, 0)); }
internal struct Pd2 : IFpLanes { public static bool Exact => false; public static bool Quiet(V a, V b, V r) => Lane.OrdD(Lane.D(a, 0)) & Lane.OrdD(Lane.D(b, 0)) & Lane.NormD(Lane.D(r, 0)) & Lane.OrdD(Lane.D(a, 1)) & Lane.OrdD(Lane.D(b, 1)) & Lane.NormD(Lane.D(r, 1)); }
internal struct Pd1 : IFpLanes { public static bool Exact => false; public static bool Quiet(V a, V b, V r) => Lane.OrdD(Lane.D(b, 0)) & Lane.NormD(Lane.D(r, 0)) & Lane.OrdD(Lane.D(b, 1)) & Lane.NormD(Lane.D(r, 1)); }
internal struct PdCmp : IFpLanes { public static bool Exact => true; public static bool Quiet(V a, V b, V r) => Lane.OrdD(Lane.D(a, 0)) & Lane.OrdD(Lane.D(b, 0)) & Lane.OrdD(Lane.D(a, 1)) & Lane.OrdD(Lane.D(b, 1)); }
internal struct Ss2 : IFpLanes { public static bool Exact => false; public static bool Quiet(V a, V b, V r) => Lane.OrdS(Lane.S(a, 0)) & Lane.OrdS(Lane.S(b, 0)) & Lane.NormS(Lane.S(r, 0)); }
internal struct Ss1 : IFpLanes { public static bool Exact => false; public static bool Quiet(V a, V b, V r) => Lane.OrdS(Lane.S(b, 0)) & Lane.NormS(Lane.S(r, 0)); }
internal struct SsCmp : IFpLanes { public static bool Exact => true; public static bool Quiet(V a, V b, V r) => Lane.OrdS(Lane.S(a, 0)) & Lane.OrdS(Lane.S(b, 0)); }
internal struct Ps2 : IFpLanes
{
    public static bool Exact => false;
    public static bool Quiet(V a, V b, V r)
    {
        bool q = true;
        for (int i = 0; i < 4; i++) q &= Lane.OrdS(Lane.S(a, i)) & Lane.OrdS(Lane.S(b, i)) & Lane.NormS(Lane.S(r, i));
        return q;
    }
}
internal struct Ps1 : IFpLanes
{
    public static bool Exact => false;
    public static bool Quiet(V a, V b, V r)
    {
        bool q = true;
        for (int i = 0; i < 4; i++) q &= Lane.OrdS(Lane.S(b, i)) & Lane.NormS(Lane.S(r, i));
        return q;
    }
}
internal struct PsCmp : IFpLanes
{
    public static bool Exact => true;
    public static bool Quiet(V a, V b, V r)
    {
        bool q = true;
        for (int i = 0; i < 4; i++) q &= Lane.OrdS(Lane.S(a, i)) & Lane.OrdS(Lane.S(b, i));
        return q;
    }
}
// Conversions: int32 -> float (only PE possible), float -> int32 (IE gives 0x80000000), between float formats.
internal struct FromInt : IFpLanes { public static bool Exact => false; public static bool Quiet(V a, V b, V r) => true; }
internal struct ToInt4 : IFpLanes
{
    public static bool Exact => false;
    public static bool Quiet(V a, V b, V r)
    {
        bool q = true;
        for (int i = 0; i < 4; i++) q &= Lane.S(r, i) != 0x8000_0000u;
        return q;
    }
}
internal struct ToInt2 : IFpLanes { public static bool Exact => false; public static bool Quiet(V a, V b, V r) => Lane.S(r, 0) != 0x8000_0000u & Lane.S(r, 1) != 0x8000_0000u; }
// rcp/rsqrt raise nothing; only FZ/DAZ (not the default) can change their result.
internal struct NoFlags : IFpLanes { public static bool Exact => true; public static bool Quiet(V a, V b, V r) => true; }
internal struct Sd2Ss : IFpLanes { public static bool Exact => false; public static bool Quiet(V a, V b, V r) => Lane.OrdD(Lane.D(b, 0)) & Lane.NormS(Lane.S(r, 0)); }
internal struct Ss2Sd : IFpLanes { public static bool Exact => true; public static bool Quiet(V a, V b, V r) => Lane.OrdS(Lane.S(b, 0)); }
internal struct Ps2Pd : IFpLanes { public static bool Exact => true; public static bool Quiet(V a, V b, V r) => Lane.OrdS(Lane.S(b, 0)) & Lane.OrdS(Lane.S(b, 1)); }
internal struct Pd2Ps : IFpLanes { public static bool Exact => false; public static bool Quiet(V a, V b, V r) => Lane.OrdD(Lane.D(b, 0)) & Lane.NormS(Lane.S(r, 0)) & Lane.OrdD(Lane.D(b, 1)) & Lane.NormS(Lane.S(r, 1)); }
#pragma warning restore CS1591

internal static unsafe partial class Sse
{
    /// <summary>MXCSR bits that must read 0x1F80 for the managed fast path: DAZ, the masks, RC, FZ (and PE when it can be raised).</summary>
    private const uint ControlBits = 0xFFC0, Default = 0x1F80, Pe = 0x20;

    /// <summary>
    /// An SSE floating-point operation <c>dst = O(dst, src, imm)</c> that honours MXCSR. Fast path:
    /// the default control bits (round to nearest, all masked, no FZ/DAZ), PE already set unless
    /// the operation is exact, and inputs and result that can raise nothing else: the managed
    /// operation is then exactly what the host computes, flags included. Otherwise the host
    /// computes it under the guest's MXCSR (<see cref="HostFp"/>). Imm: predicate in bits 0-7,
    /// thunk index from bit 8.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Fp<O, L>(CpuState* s, Op* op) where O : struct, IV2 where L : struct, IFpLanes
    {
        Check(s);
        V b = Src(s, op);
        V a = Ld(s, op->R);
        uint mask = L.Exact ? ControlBits : ControlBits | Pe;
        uint want = L.Exact ? Default : Default | Pe;
        if ((s->Mxcsr & mask) == want)
        {
            V r = O.Do(a, b, op->Imm);
            if (L.Quiet(a, b, r))
            {
                St(s, op->R, r);
                return Exec.Next(s, op);
            }
        }
        return FpSlow(s, op, a, b);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* FpSlow(CpuState* s, Op* op, V a, V b)
    {
        ulong* io = stackalloc ulong[8];
        a.Store((byte*)io);
        b.Store((byte*)(io + 2));
        OnHost(s, op->Imm >> 8, io);
        St(s, op->R, Vector128.Load((byte*)io));
        return Exec.Next(s, op);
    }

    /// <summary>
    /// <c>O(a, b)</c> under the guest's MXCSR as <see cref="Fp{O, L}"/> computes it (the managed fast
    /// path, else thunk <paramref name="thunk"/>), for handlers that place the result themselves
    /// (the MMX conversions, Mmx.Cvt.cs). An unmasked exception throws before anything is written.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static V FpValue<O, L>(CpuState* s, int thunk, V a, V b) where O : struct, IV2 where L : struct, IFpLanes
    {
        uint mask = L.Exact ? ControlBits : ControlBits | Pe;
        uint want = L.Exact ? Default : Default | Pe;
        if ((s->Mxcsr & mask) == want)
        {
            V r = O.Do(a, b, 0);
            if (L.Quiet(a, b, r)) return r;
        }
        return FpValueSlow(s, thunk, a, b);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static V FpValueSlow(CpuState* s, int thunk, V a, V b)
    {
        ulong* io = stackalloc ulong[8];
        a.Store((byte*)io);
        b.Store((byte*)(io + 2));
        OnHost(s, thunk, io);
        return Vector128.Load((byte*)io);
    }

    /// <summary>
    /// Runs thunk <paramref name="thunk"/> under the guest's rounding, FZ and DAZ with every
    /// exception masked and the flags cleared, then adds the flags it raised to the guest's
    /// MXCSR. A raised flag the guest has unmasked is #XM (CR4.OSXMMEXCPT) or #UD, and the
    /// caller then writes no result.
    /// </summary>
    private static void OnHost(CpuState* s, int thunk, ulong* io)
    {
        uint mx = s->Mxcsr;
        io[4] = (mx & ~0x3Fu) | 0x1F80;
        HostFp.Run(thunk, io);
        uint raised = (uint)io[4] & 0x3F;
        s->Mxcsr = mx | raised;
        if ((raised & ~(mx >> 7) & 0x3F) != 0) throw new GuestFault((s->Cr4 & 0x400) != 0 ? Vec.XM : Vec.UD);
    }

    /// <summary>Binds an SSE floating-point op: <see cref="BindV2{O}"/>, then <see cref="Fp{O, L}"/> with its thunk.</summary>
    private static bool BindFp<O, L>(in Instruction ins, Op* op) where O : struct, IV2 where L : struct, IFpLanes
    {
        if (!BindV2<O>(ins, op, true)) return false;
        bool cmp = ins.Mnemonic is Mnemonic.Cmpsd or Mnemonic.Cmpss or Mnemonic.Cmppd or Mnemonic.Cmpps;
        int thunk = HostFp.For(ins.Code, cmp ? op->Imm & 7 : -1);
        if (thunk < 0) return false;
        op->Imm = (op->Imm & 0xFF) | thunk << 8;
        op->H = &Fp<O, L>;
        return true;
    }

    private static void AddFp<O, L>(Mnemonic m) where O : struct, IV2 where L : struct, IFpLanes =>
        Binder.Add(m, (in Instruction i, Op* o) => BindFp<O, L>(i, o));

    /// <summary>The MXCSR-honouring registrations (replacing the plain V2 ones for these mnemonics).</summary>
    private static void RegisterFp()
    {
        AddFp<Addsd, Sd2>(Mnemonic.Addsd); AddFp<Subsd, Sd2>(Mnemonic.Subsd); AddFp<Mulsd, Sd2>(Mnemonic.Mulsd); AddFp<Divsd, Sd2>(Mnemonic.Divsd);
        AddFp<Minsd, SdCmp>(Mnemonic.Minsd); AddFp<Maxsd, SdCmp>(Mnemonic.Maxsd); AddFp<Sqrtsd, Sd1>(Mnemonic.Sqrtsd);
        AddFp<Addss, Ss2>(Mnemonic.Addss); AddFp<Subss, Ss2>(Mnemonic.Subss); AddFp<Mulss, Ss2>(Mnemonic.Mulss); AddFp<Divss, Ss2>(Mnemonic.Divss);
        AddFp<Minss, SsCmp>(Mnemonic.Minss); AddFp<Maxss, SsCmp>(Mnemonic.Maxss); AddFp<Sqrtss, Ss1>(Mnemonic.Sqrtss);
        AddFp<Addpd, Pd2>(Mnemonic.Addpd); AddFp<Subpd, Pd2>(Mnemonic.Subpd); AddFp<Mulpd, Pd2>(Mnemonic.Mulpd); AddFp<Divpd, Pd2>(Mnemonic.Divpd);
        AddFp<Minpd, PdCmp>(Mnemonic.Minpd); AddFp<Maxpd, PdCmp>(Mnemonic.Maxpd); AddFp<Sqrtpd, Pd1>(Mnemonic.Sqrtpd);
        AddFp<Addps, Ps2>(Mnemonic.Addps); AddFp<Subps, Ps2>(Mnemonic.Subps); AddFp<Mulps, Ps2>(Mnemonic.Mulps); AddFp<Divps, Ps2>(Mnemonic.Divps);
        AddFp<Minps, PsCmp>(Mnemonic.Minps); AddFp<Maxps, PsCmp>(Mnemonic.Maxps); AddFp<Sqrtps, Ps1>(Mnemonic.Sqrtps);
        AddFp<Cmppd, PdCmp>(Mnemonic.Cmppd); AddFp<Cmpps, PsCmp>(Mnemonic.Cmpps); AddFp<Cmpss, SsCmp>(Mnemonic.Cmpss);
        Binder.Add(Mnemonic.Cmpsd, (in Instruction i, Op* o) => i.Code == Code.Cmpsd_m32_m32 ? StringOps.Bind(i, o, 3) : BindFp<Cmpsd, SdCmp>(i, o));
        AddFp<Cvtsd2ss, Sd2Ss>(Mnemonic.Cvtsd2ss); AddFp<Cvtss2sd, Ss2Sd>(Mnemonic.Cvtss2sd);
        AddFp<Cvtdq2ps, FromInt>(Mnemonic.Cvtdq2ps); AddFp<Cvtps2pd, Ps2Pd>(Mnemonic.Cvtps2pd); AddFp<Cvtpd2ps, Pd2Ps>(Mnemonic.Cvtpd2ps);
        AddFp<Cvttps2dq, ToInt4>(Mnemonic.Cvttps2dq); AddFp<Cvtps2dq, ToInt4>(Mnemonic.Cvtps2dq);
        AddFp<Cvttpd2dq, ToInt2>(Mnemonic.Cvttpd2dq); AddFp<Cvtpd2dq, ToInt2>(Mnemonic.Cvtpd2dq);
        AddFp<Rcpps, NoFlags>(Mnemonic.Rcpps); AddFp<Rsqrtps, NoFlags>(Mnemonic.Rsqrtps);
        AddFp<Rcpss, NoFlags>(Mnemonic.Rcpss); AddFp<Rsqrtss, NoFlags>(Mnemonic.Rsqrtss);
    }
}
