using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using V = System.Runtime.Intrinsics.Vector128<byte>;
using X86Sse = System.Runtime.Intrinsics.X86.Sse;

namespace ToyVmm.Cpu.Ops;

/// <summary>
/// A two-operand SSE operation <c>dst = Do(dst, src, imm)</c>. Implemented with the
/// host's own SSE2 (x64 guarantees it), so results match the hardware bit for bit
/// under the default MXCSR (round to nearest, exceptions masked).
/// </summary>
internal interface IV2 { static abstract V Do(V a, V b, int imm); }

#pragma warning disable CS1591
internal struct Pxor : IV2 { public static V Do(V a, V b, int i) => Sse2.Xor(a, b); }
internal struct Por : IV2 { public static V Do(V a, V b, int i) => Sse2.Or(a, b); }
internal struct Pand : IV2 { public static V Do(V a, V b, int i) => Sse2.And(a, b); }
internal struct Pandn : IV2 { public static V Do(V a, V b, int i) => Sse2.AndNot(a, b); }
internal struct Paddb : IV2 { public static V Do(V a, V b, int i) => Sse2.Add(a, b); }
internal struct Paddw : IV2 { public static V Do(V a, V b, int i) => Sse2.Add(a.AsUInt16(), b.AsUInt16()).AsByte(); }
internal struct Paddd : IV2 { public static V Do(V a, V b, int i) => Sse2.Add(a.AsUInt32(), b.AsUInt32()).AsByte(); }
internal struct Paddq : IV2 { public static V Do(V a, V b, int i) => Sse2.Add(a.AsUInt64(), b.AsUInt64()).AsByte(); }
internal struct Psubb : IV2 { public static V Do(V a, V b, int i) => Sse2.Subtract(a, b); }
internal struct Psubw : IV2 { public static V Do(V a, V b, int i) => Sse2.Subtract(a.AsUInt16(), b.AsUInt16()).AsByte(); }
internal struct Psubd : IV2 { public static V Do(V a, V b, int i) => Sse2.Subtract(a.AsUInt32(), b.AsUInt32()).AsByte(); }
internal struct Psubq : IV2 { public static V Do(V a, V b, int i) => Sse2.Subtract(a.AsUInt64(), b.AsUInt64()).AsByte(); }
internal struct Paddsb : IV2 { public static V Do(V a, V b, int i) => Sse2.AddSaturate(a.AsSByte(), b.AsSByte()).AsByte(); }
internal struct Paddsw : IV2 { public static V Do(V a, V b, int i) => Sse2.AddSaturate(a.AsInt16(), b.AsInt16()).AsByte(); }
internal struct Paddusb : IV2 { public static V Do(V a, V b, int i) => Sse2.AddSaturate(a, b); }
internal struct Paddusw : IV2 { public static V Do(V a, V b, int i) => Sse2.AddSaturate(a.AsUInt16(), b.AsUInt16()).AsByte(); }
internal struct Psubsb : IV2 { public static V Do(V a, V b, int i) => Sse2.SubtractSaturate(a.AsSByte(), b.AsSByte()).AsByte(); }
internal struct Psubsw : IV2 { public static V Do(V a, V b, int i) => Sse2.SubtractSaturate(a.AsInt16(), b.AsInt16()).AsByte(); }
internal struct Psubusb : IV2 { public static V Do(V a, V b, int i) => Sse2.SubtractSaturate(a, b); }
internal struct Psubusw : IV2 { public static V Do(V a, V b, int i) => Sse2.SubtractSaturate(a.AsUInt16(), b.AsUInt16()).AsByte(); }
internal struct Pcmpeqb : IV2 { public static V Do(V a, V b, int i) => Sse2.CompareEqual(a, b); }
internal struct Pcmpeqw : IV2 { public static V Do(V a, V b, int i) => Sse2.CompareEqual(a.AsUInt16(), b.AsUInt16()).AsByte(); }
internal struct Pcmpeqd : IV2 { public static V Do(V a, V b, int i) => Sse2.CompareEqual(a.AsUInt32(), b.AsUInt32()).AsByte(); }
internal struct Pcmpgtb : IV2 { public static V Do(V a, V b, int i) => Sse2.CompareGreaterThan(a.AsSByte(), b.AsSByte()).AsByte(); }
internal struct Pcmpgtw : IV2 { public static V Do(V a, V b, int i) => Sse2.CompareGreaterThan(a.AsInt16(), b.AsInt16()).AsByte(); }
internal struct Pcmpgtd : IV2 { public static V Do(V a, V b, int i) => Sse2.CompareGreaterThan(a.AsInt32(), b.AsInt32()).AsByte(); }
internal struct Punpcklbw : IV2 { public static V Do(V a, V b, int i) => Sse2.UnpackLow(a, b); }
internal struct Punpcklwd : IV2 { public static V Do(V a, V b, int i) => Sse2.UnpackLow(a.AsUInt16(), b.AsUInt16()).AsByte(); }
internal struct Punpckldq : IV2 { public static V Do(V a, V b, int i) => Sse2.UnpackLow(a.AsUInt32(), b.AsUInt32()).AsByte(); }
internal struct Punpcklqdq : IV2 { public static V Do(V a, V b, int i) => Sse2.UnpackLow(a.AsUInt64(), b.AsUInt64()).AsByte(); }
internal struct Punpckhbw : IV2 { public static V Do(V a, V b, int i) => Sse2.UnpackHigh(a, b); }
internal struct Punpckhwd : IV2 { public static V Do(V a, V b, int i) => Sse2.UnpackHigh(a.AsUInt16(), b.AsUInt16()).AsByte(); }
internal struct Punpckhdq : IV2 { public static V Do(V a, V b, int i) => Sse2.UnpackHigh(a.AsUInt32(), b.AsUInt32()).AsByte(); }
internal struct Punpckhqdq : IV2 { public static V Do(V a, V b, int i) => Sse2.UnpackHigh(a.AsUInt64(), b.AsUInt64()).AsByte(); }
internal struct Packsswb : IV2 { public static V Do(V a, V b, int i) => Sse2.PackSignedSaturate(a.AsInt16(), b.AsInt16()).AsByte(); }
internal struct Packssdw : IV2 { public static V Do(V a, V b, int i) => Sse2.PackSignedSaturate(a.AsInt32(), b.AsInt32()).AsByte(); }
internal struct Packuswb : IV2 { public static V Do(V a, V b, int i) => Sse2.PackUnsignedSaturate(a.AsInt16(), b.AsInt16()); }
internal struct Pmullw : IV2 { public static V Do(V a, V b, int i) => Sse2.MultiplyLow(a.AsInt16(), b.AsInt16()).AsByte(); }
internal struct Pmulhw : IV2 { public static V Do(V a, V b, int i) => Sse2.MultiplyHigh(a.AsInt16(), b.AsInt16()).AsByte(); }
internal struct Pmulhuw : IV2 { public static V Do(V a, V b, int i) => Sse2.MultiplyHigh(a.AsUInt16(), b.AsUInt16()).AsByte(); }
internal struct Pmuludq : IV2 { public static V Do(V a, V b, int i) => Sse2.Multiply(a.AsUInt32(), b.AsUInt32()).AsByte(); }
internal struct Pmaddwd : IV2 { public static V Do(V a, V b, int i) => Sse2.MultiplyAddAdjacent(a.AsInt16(), b.AsInt16()).AsByte(); }
internal struct Pminub : IV2 { public static V Do(V a, V b, int i) => Sse2.Min(a, b); }
internal struct Pmaxub : IV2 { public static V Do(V a, V b, int i) => Sse2.Max(a, b); }
internal struct Pminsw : IV2 { public static V Do(V a, V b, int i) => Sse2.Min(a.AsInt16(), b.AsInt16()).AsByte(); }
internal struct Pmaxsw : IV2 { public static V Do(V a, V b, int i) => Sse2.Max(a.AsInt16(), b.AsInt16()).AsByte(); }
internal struct Pavgb : IV2 { public static V Do(V a, V b, int i) => Sse2.Average(a, b); }
internal struct Pavgw : IV2 { public static V Do(V a, V b, int i) => Sse2.Average(a.AsUInt16(), b.AsUInt16()).AsByte(); }
internal struct Psadbw : IV2 { public static V Do(V a, V b, int i) => Sse2.SumAbsoluteDifferences(a, b).AsByte(); }
// Shifts by an xmm count.
internal struct PsrlwX : IV2 { public static V Do(V a, V b, int i) => Sse2.ShiftRightLogical(a.AsUInt16(), b.AsUInt16()).AsByte(); }
internal struct PsrldX : IV2 { public static V Do(V a, V b, int i) => Sse2.ShiftRightLogical(a.AsUInt32(), b.AsUInt32()).AsByte(); }
internal struct PsrlqX : IV2 { public static V Do(V a, V b, int i) => Sse2.ShiftRightLogical(a.AsUInt64(), b.AsUInt64()).AsByte(); }
internal struct PsllwX : IV2 { public static V Do(V a, V b, int i) => Sse2.ShiftLeftLogical(a.AsUInt16(), b.AsUInt16()).AsByte(); }
internal struct PslldX : IV2 { public static V Do(V a, V b, int i) => Sse2.ShiftLeftLogical(a.AsUInt32(), b.AsUInt32()).AsByte(); }
internal struct PsllqX : IV2 { public static V Do(V a, V b, int i) => Sse2.ShiftLeftLogical(a.AsUInt64(), b.AsUInt64()).AsByte(); }
internal struct PsrawX : IV2 { public static V Do(V a, V b, int i) => Sse2.ShiftRightArithmetic(a.AsInt16(), b.AsInt16()).AsByte(); }
internal struct PsradX : IV2 { public static V Do(V a, V b, int i) => Sse2.ShiftRightArithmetic(a.AsInt32(), b.AsInt32()).AsByte(); }
// Shifts by an immediate (b unused).
internal struct PsrlwI : IV2 { public static V Do(V a, V b, int i) => Sse2.ShiftRightLogical(a.AsUInt16(), Vector128.CreateScalar((ulong)(byte)i).AsUInt16()).AsByte(); }
internal struct PsrldI : IV2 { public static V Do(V a, V b, int i) => Sse2.ShiftRightLogical(a.AsUInt32(), Vector128.CreateScalar((ulong)(byte)i).AsUInt32()).AsByte(); }
internal struct PsrlqI : IV2 { public static V Do(V a, V b, int i) => Sse2.ShiftRightLogical(a.AsUInt64(), Vector128.CreateScalar((ulong)(byte)i)).AsByte(); }
internal struct PsllwI : IV2 { public static V Do(V a, V b, int i) => Sse2.ShiftLeftLogical(a.AsUInt16(), Vector128.CreateScalar((ulong)(byte)i).AsUInt16()).AsByte(); }
internal struct PslldI : IV2 { public static V Do(V a, V b, int i) => Sse2.ShiftLeftLogical(a.AsUInt32(), Vector128.CreateScalar((ulong)(byte)i).AsUInt32()).AsByte(); }
internal struct PsllqI : IV2 { public static V Do(V a, V b, int i) => Sse2.ShiftLeftLogical(a.AsUInt64(), Vector128.CreateScalar((ulong)(byte)i)).AsByte(); }
internal struct PsrawI : IV2 { public static V Do(V a, V b, int i) => Sse2.ShiftRightArithmetic(a.AsInt16(), Vector128.CreateScalar((ulong)(byte)i).AsInt16()).AsByte(); }
internal struct PsradI : IV2 { public static V Do(V a, V b, int i) => Sse2.ShiftRightArithmetic(a.AsInt32(), Vector128.CreateScalar((ulong)(byte)i).AsInt32()).AsByte(); }
internal struct Psrldq : IV2 { public static V Do(V a, V b, int i) { int n = (byte)i; if (n > 15) return default; var q = a.AsUInt64(); var t = new UInt128(q[1], q[0]) >> (8 * n); return Vector128.Create((ulong)t, (ulong)(t >> 64)).AsByte(); } }
internal struct Pslldq : IV2 { public static V Do(V a, V b, int i) { int n = (byte)i; if (n > 15) return default; var q = a.AsUInt64(); var t = new UInt128(q[1], q[0]) << (8 * n); return Vector128.Create((ulong)t, (ulong)(t >> 64)).AsByte(); } }
// Shuffles.
internal struct Pshufd : IV2 { public static V Do(V a, V b, int i) { var x = b.AsUInt32(); return Vector128.Create(x.GetElement(i & 3), x.GetElement((i >> 2) & 3), x.GetElement((i >> 4) & 3), x.GetElement((i >> 6) & 3)).AsByte(); } }
internal struct Pshuflw : IV2 { public static V Do(V a, V b, int i) { var x = b.AsUInt16(); return Vector128.Create(x.GetElement(i & 3), x.GetElement((i >> 2) & 3), x.GetElement((i >> 4) & 3), x.GetElement((i >> 6) & 3), x.GetElement(4), x.GetElement(5), x.GetElement(6), x.GetElement(7)).AsByte(); } }
internal struct Pshufhw : IV2 { public static V Do(V a, V b, int i) { var x = b.AsUInt16(); return Vector128.Create(x.GetElement(0), x.GetElement(1), x.GetElement(2), x.GetElement(3), x.GetElement(4 + (i & 3)), x.GetElement(4 + ((i >> 2) & 3)), x.GetElement(4 + ((i >> 4) & 3)), x.GetElement(4 + ((i >> 6) & 3))).AsByte(); } }
internal struct Shufps : IV2 { public static V Do(V a, V b, int i) { var x = a.AsUInt32(); var y = b.AsUInt32(); return Vector128.Create(x.GetElement(i & 3), x.GetElement((i >> 2) & 3), y.GetElement((i >> 4) & 3), y.GetElement((i >> 6) & 3)).AsByte(); } }
internal struct Shufpd : IV2 { public static V Do(V a, V b, int i) { var x = a.AsUInt64(); var y = b.AsUInt64(); return Vector128.Create(x.GetElement(i & 1), y.GetElement((i >> 1) & 1)).AsByte(); } }
internal struct Unpcklps : IV2 { public static V Do(V a, V b, int i) => X86Sse.UnpackLow(a.AsSingle(), b.AsSingle()).AsByte(); }
internal struct Unpckhps : IV2 { public static V Do(V a, V b, int i) => X86Sse.UnpackHigh(a.AsSingle(), b.AsSingle()).AsByte(); }
// Floating point, packed and scalar (scalar forms keep the destination's upper part).
internal struct Addpd : IV2 { public static V Do(V a, V b, int i) => Sse2.Add(a.AsDouble(), b.AsDouble()).AsByte(); }
internal struct Subpd : IV2 { public static V Do(V a, V b, int i) => Sse2.Subtract(a.AsDouble(), b.AsDouble()).AsByte(); }
internal struct Mulpd : IV2 { public static V Do(V a, V b, int i) => Sse2.Multiply(a.AsDouble(), b.AsDouble()).AsByte(); }
internal struct Divpd : IV2 { public static V Do(V a, V b, int i) => Sse2.Divide(a.AsDouble(), b.AsDouble()).AsByte(); }
internal struct Minpd : IV2 { public static V Do(V a, V b, int i) => Sse2.Min(a.AsDouble(), b.AsDouble()).AsByte(); }
internal struct Maxpd : IV2 { public static V Do(V a, V b, int i) => Sse2.Max(a.AsDouble(), b.AsDouble()).AsByte(); }
internal struct Sqrtpd : IV2 { public static V Do(V a, V b, int i) => Sse2.Sqrt(b.AsDouble()).AsByte(); }
internal struct Addsd : IV2 { public static V Do(V a, V b, int i) => Sse2.AddScalar(a.AsDouble(), b.AsDouble()).AsByte(); }
internal struct Subsd : IV2 { public static V Do(V a, V b, int i) => Sse2.SubtractScalar(a.AsDouble(), b.AsDouble()).AsByte(); }
internal struct Mulsd : IV2 { public static V Do(V a, V b, int i) => Sse2.MultiplyScalar(a.AsDouble(), b.AsDouble()).AsByte(); }
internal struct Divsd : IV2 { public static V Do(V a, V b, int i) => Sse2.DivideScalar(a.AsDouble(), b.AsDouble()).AsByte(); }
internal struct Minsd : IV2 { public static V Do(V a, V b, int i) => Sse2.MinScalar(a.AsDouble(), b.AsDouble()).AsByte(); }
internal struct Maxsd : IV2 { public static V Do(V a, V b, int i) => Sse2.MaxScalar(a.AsDouble(), b.AsDouble()).AsByte(); }
internal struct Sqrtsd : IV2 { public static V Do(V a, V b, int i) => Sse2.SqrtScalar(a.AsDouble(), b.AsDouble()).AsByte(); }
internal struct Addps : IV2 { public static V Do(V a, V b, int i) => X86Sse.Add(a.AsSingle(), b.AsSingle()).AsByte(); }
internal struct Subps : IV2 { public static V Do(V a, V b, int i) => X86Sse.Subtract(a.AsSingle(), b.AsSingle()).AsByte(); }
internal struct Mulps : IV2 { public static V Do(V a, V b, int i) => X86Sse.Multiply(a.AsSingle(), b.AsSingle()).AsByte(); }
internal struct Divps : IV2 { public static V Do(V a, V b, int i) => X86Sse.Divide(a.AsSingle(), b.AsSingle()).AsByte(); }
internal struct Minps : IV2 { public static V Do(V a, V b, int i) => X86Sse.Min(a.AsSingle(), b.AsSingle()).AsByte(); }
internal struct Maxps : IV2 { public static V Do(V a, V b, int i) => X86Sse.Max(a.AsSingle(), b.AsSingle()).AsByte(); }
internal struct Sqrtps : IV2 { public static V Do(V a, V b, int i) => X86Sse.Sqrt(b.AsSingle()).AsByte(); }
internal struct Addss : IV2 { public static V Do(V a, V b, int i) => X86Sse.AddScalar(a.AsSingle(), b.AsSingle()).AsByte(); }
internal struct Subss : IV2 { public static V Do(V a, V b, int i) => X86Sse.SubtractScalar(a.AsSingle(), b.AsSingle()).AsByte(); }
internal struct Mulss : IV2 { public static V Do(V a, V b, int i) => X86Sse.MultiplyScalar(a.AsSingle(), b.AsSingle()).AsByte(); }
internal struct Divss : IV2 { public static V Do(V a, V b, int i) => X86Sse.DivideScalar(a.AsSingle(), b.AsSingle()).AsByte(); }
internal struct Minss : IV2 { public static V Do(V a, V b, int i) => X86Sse.MinScalar(a.AsSingle(), b.AsSingle()).AsByte(); }
internal struct Maxss : IV2 { public static V Do(V a, V b, int i) => X86Sse.MaxScalar(a.AsSingle(), b.AsSingle()).AsByte(); }
internal struct Sqrtss : IV2 { public static V Do(V a, V b, int i) => X86Sse.SqrtScalar(a.AsSingle(), b.AsSingle()).AsByte(); }
internal struct Unpcklpd : IV2 { public static V Do(V a, V b, int i) => Sse2.UnpackLow(a.AsDouble(), b.AsDouble()).AsByte(); }
internal struct Unpckhpd : IV2 { public static V Do(V a, V b, int i) => Sse2.UnpackHigh(a.AsDouble(), b.AsDouble()).AsByte(); }
internal struct Cmppd : IV2 { public static V Do(V a, V b, int i) => SseCompare.Pd(a.AsDouble(), b.AsDouble(), i).AsByte(); }
internal struct Cmpsd : IV2 { public static V Do(V a, V b, int i) => a.AsUInt64().WithElement(0, SseCompare.Pd(a.AsDouble(), b.AsDouble(), i).AsUInt64().GetElement(0)).AsByte(); }
internal struct Cmpps : IV2 { public static V Do(V a, V b, int i) => SseCompare.Ps(a.AsSingle(), b.AsSingle(), i).AsByte(); }
internal struct Cmpss : IV2 { public static V Do(V a, V b, int i) => a.AsUInt32().WithElement(0, SseCompare.Ps(a.AsSingle(), b.AsSingle(), i).AsUInt32().GetElement(0)).AsByte(); }
// Approximate reciprocals: the host's own approximation (it differs between CPU vendors, and the guest runs on this one).
internal struct Rcpps : IV2 { public static V Do(V a, V b, int i) => X86Sse.Reciprocal(b.AsSingle()).AsByte(); }
internal struct Rsqrtps : IV2 { public static V Do(V a, V b, int i) => X86Sse.ReciprocalSqrt(b.AsSingle()).AsByte(); }
internal struct Rcpss : IV2 { public static V Do(V a, V b, int i) => X86Sse.ReciprocalScalar(a.AsSingle(), b.AsSingle()).AsByte(); }
internal struct Rsqrtss : IV2 { public static V Do(V a, V b, int i) => X86Sse.ReciprocalSqrtScalar(a.AsSingle(), b.AsSingle()).AsByte(); }
// Conversions between float formats (xmm to xmm).
internal struct Cvtsd2ss : IV2 { public static V Do(V a, V b, int i) => Sse2.ConvertScalarToVector128Single(a.AsSingle(), b.AsDouble()).AsByte(); }
internal struct Cvtss2sd : IV2 { public static V Do(V a, V b, int i) => Sse2.ConvertScalarToVector128Double(a.AsDouble(), b.AsSingle()).AsByte(); }
internal struct Cvtdq2pd : IV2 { public static V Do(V a, V b, int i) => Sse2.ConvertToVector128Double(b.AsInt32()).AsByte(); }
internal struct Cvtdq2ps : IV2 { public static V Do(V a, V b, int i) => Sse2.ConvertToVector128Single(b.AsInt32()).AsByte(); }
internal struct Cvtps2pd : IV2 { public static V Do(V a, V b, int i) => Sse2.ConvertToVector128Double(b.AsSingle()).AsByte(); }
internal struct Cvtpd2ps : IV2 { public static V Do(V a, V b, int i) => Sse2.ConvertToVector128Single(b.AsDouble()).AsByte(); }
internal struct Cvttps2dq : IV2 { public static V Do(V a, V b, int i) => Sse2.ConvertToVector128Int32WithTruncation(b.AsSingle()).AsByte(); }
internal struct Cvtps2dq : IV2 { public static V Do(V a, V b, int i) => Sse2.ConvertToVector128Int32(b.AsSingle()).AsByte(); }
internal struct Cvttpd2dq : IV2 { public static V Do(V a, V b, int i) => Sse2.ConvertToVector128Int32WithTruncation(b.AsDouble()).AsByte(); }
internal struct Cvtpd2dq : IV2 { public static V Do(V a, V b, int i) => Sse2.ConvertToVector128Int32(b.AsDouble()).AsByte(); }
// Moves expressed as operations.
internal struct Mov128 : IV2 { public static V Do(V a, V b, int i) => b; }
internal struct MovqLow : IV2 { public static V Do(V a, V b, int i) => Vector128.CreateScalar(b.AsUInt64().ToScalar()).AsByte(); }
internal struct MovsdRR : IV2 { public static V Do(V a, V b, int i) => a.AsUInt64().WithElement(0, b.AsUInt64().ToScalar()).AsByte(); }
internal struct MovssRR : IV2 { public static V Do(V a, V b, int i) => a.AsUInt32().WithElement(0, b.AsUInt32().ToScalar()).AsByte(); }
internal struct MovLowKeepHigh : IV2 { public static V Do(V a, V b, int i) => a.AsUInt64().WithElement(0, b.AsUInt64().ToScalar()).AsByte(); }
internal struct MovHighFromLow : IV2 { public static V Do(V a, V b, int i) => a.AsUInt64().WithElement(1, b.AsUInt64().ToScalar()).AsByte(); }
internal struct Movhlps : IV2 { public static V Do(V a, V b, int i) => a.AsUInt64().WithElement(0, b.AsUInt64().GetElement(1)).AsByte(); }
#pragma warning restore CS1591

internal static class SseCompare
{
    private static bool P(double x, double y, int p) => (p & 7) switch
    {
        0 => x == y, 1 => x < y, 2 => x <= y, 3 => double.IsNaN(x) || double.IsNaN(y),
        4 => !(x == y), 5 => !(x < y), 6 => !(x <= y), _ => !double.IsNaN(x) && !double.IsNaN(y),
    };

    public static Vector128<double> Pd(Vector128<double> a, Vector128<double> b, int p) =>
        Vector128.Create(P(a[0], b[0], p) ? -1L : 0, P(a[1], b[1], p) ? -1L : 0).AsDouble();

    public static Vector128<float> Ps(Vector128<float> a, Vector128<float> b, int p) =>
        Vector128.Create(P(a[0], b[0], p) ? -1 : 0, P(a[1], b[1], p) ? -1 : 0, P(a[2], b[2], p) ? -1 : 0, P(a[3], b[3], p) ? -1 : 0).AsSingle();
}
