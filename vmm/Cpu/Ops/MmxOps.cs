using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using V = System.Runtime.Intrinsics.Vector128<byte>;

namespace ToyVmm.Cpu.Ops;

// MMX operations that are not the SSE operation on the low lane (Mmx.M2 runs the others, e.g.
// Paddb, with both 64-bit operands in the low lane and the upper lane zero).
#pragma warning disable CS1591
/// <summary>punpckh* on 64-bit operands: the upper half of the 128-bit low unpack (the interleaved upper halves).</summary>
internal struct HighHalf<O> : IV2 where O : struct, IV2
{
    public static V Do(V a, V b, int i) => Vector128.CreateScalar(O.Do(a, b, i).AsUInt64().GetElement(1)).AsByte();
}

/// <summary>packss* / packus* on 64-bit operands: the 128-bit pack of (a, b) side by side, whose low half holds both.</summary>
internal struct PackPair<O> : IV2 where O : struct, IV2
{
    public static V Do(V a, V b, int i) => O.Do(Sse2.UnpackLow(a.AsUInt64(), b.AsUInt64()).AsByte(), default, i);
}

/// <summary>pshufw mm, mm/m64, imm8: word k of the result is word (imm >> 2k) &amp; 3 of the source.</summary>
internal struct Pshufw : IV2
{
    public static V Do(V a, V b, int i)
    {
        var x = b.AsUInt16();
        ulong r = (ulong)x.GetElement(i & 3) | (ulong)x.GetElement((i >> 2) & 3) << 16
            | (ulong)x.GetElement((i >> 4) & 3) << 32 | (ulong)x.GetElement((i >> 6) & 3) << 48;
        return Vector128.CreateScalar(r).AsByte();
    }
}
#pragma warning restore CS1591
