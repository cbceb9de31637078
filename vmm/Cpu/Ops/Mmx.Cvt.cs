using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using V = System.Runtime.Intrinsics.Vector128<byte>;

namespace ToyVmm.Cpu.Ops;

/// <summary>
/// Conversions between MMX and XMM registers. Each is the packed SSE2 conversion on a vector
/// whose unused lanes are zero (a zero converts exactly and raises nothing), so the MXCSR
/// handling, fast path and host thunk included, is the packed form's (<see cref="Sse.FpValue{O, L}"/>).
/// </summary>
internal static unsafe partial class Mmx
{
    /// <summary>
    /// cvtps2pi / cvttps2pi mm, xmm/m64 (X = 2: the low two singles) and cvtpd2pi / cvttpd2pi
    /// mm, xmm/m128 (X = 0: two doubles, an aligned m128): R = mm, R2 = xmm; Imm = the host thunk of
    /// the packed conversion O.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* CvtToMm<O, L>(CpuState* s, Op* op) where O : struct, IV2 where L : struct, IFpLanes
    {
        CheckWithXmm(s);
        V b = op->Y == 0 ? Sse.Ld(s, op->R2) : Sse.Load(s, Mem.Ea(s, op), op->X);
        if (op->X == 2) b = Vector128.CreateScalar(b.AsUInt64().ToScalar()).AsByte();
        V r = Sse.FpValue<O, L>(s, op->Imm, default, b);
        Set(s, op->R, r.AsUInt64().ToScalar());
        Transition(s);
        return Exec.Next(s, op);
    }

    /// <summary>
    /// cvtpi2ps xmm, mm/m64: two int32 to the low two singles, the upper two kept (rounded under
    /// MXCSR); R = xmm, R2 = mm; Imm = the thunk of cvtdq2ps. From memory it is an SSE instruction
    /// only: no MMX fault check, no x87 transition (as the host).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* CvtPi2Ps(CpuState* s, Op* op)
    {
        if (op->Y == 0) CheckWithXmm(s);
        else if (s->SseFault != 0) throw new GuestFault(s->SseFault);
        ulong src = op->Y == 0 ? Get(s, op->R2) : Mem.Read<S64>(s, Mem.Ea(s, op));
        V r = Sse.FpValue<Cvtdq2ps, FromInt>(s, op->Imm, default, Vector128.CreateScalar(src).AsByte());
        s->Xmm[op->R * 2] = r.AsUInt64().ToScalar();
        if (op->Y == 0) Transition(s);
        return Exec.Next(s, op);
    }

    /// <summary>cvtpi2pd xmm, mm/m64: two int32 to two doubles (always exact: no MXCSR flag).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* CvtPi2Pd(CpuState* s, Op* op)
    {
        if (op->Y == 0) CheckWithXmm(s);
        else if (s->SseFault != 0) throw new GuestFault(s->SseFault);
        ulong src = op->Y == 0 ? Get(s, op->R2) : Mem.Read<S64>(s, Mem.Ea(s, op));
        Sse.St(s, op->R, Sse2.ConvertToVector128Double(Vector128.CreateScalar(src).AsInt32()).AsByte());
        if (op->Y == 0) Transition(s);
        return Exec.Next(s, op);
    }
}
