using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;

namespace ToyVmm.Cpu.Tier;

/// <summary>The calls compiled code makes out of line: the interpreter's own slow paths.</summary>
internal static unsafe class TierHelpers
{
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static ulong ReadSlow(CpuState* s, ulong va, int n) => Vcpu.Of(s).ReadSlow(va, n);

    /// <summary>64-bit imul: the low half; <paramref name="aux"/> = 3 (CF and OF) when the signed product does not fit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Imul64(long a, long b, out ulong aux)
    {
        long hi = Math.BigMul(a, b, out long lo);
        aux = hi != (lo >> 63) ? 3UL : 0;
        return (ulong)lo;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static int Cond(CpuState* s, int cc) => Flags.Cond(s, cc) ? 1 : 0;
}
