using System.Runtime.CompilerServices;

namespace ToyVmm.Cpu;

/// <summary>
/// Operand sizes as type parameters: a handler generic over <see cref="ISz"/>
/// is compiled once per size, so the size costs nothing at run time.
/// </summary>
internal unsafe interface ISz
{
    static abstract int Bits { get; }
    static abstract int Log { get; }      // log2 of bytes
    static abstract ulong Mask { get; }
}

internal struct S8 : ISz { public static int Bits => 8; public static int Log => 0; public static ulong Mask => 0xFF; }
internal struct S16 : ISz { public static int Bits => 16; public static int Log => 1; public static ulong Mask => 0xFFFF; }
internal struct S32 : ISz { public static int Bits => 32; public static int Log => 2; public static ulong Mask => 0xFFFF_FFFF; }
internal struct S64 : ISz { public static int Bits => 64; public static int Log => 3; public static ulong Mask => ulong.MaxValue; }

/// <summary>Register file access by operand size.</summary>
internal static unsafe class Reg
{
    /// <summary>
    /// Register <paramref name="r"/> as a 64-bit cell. <c>Regs</c> is the first field of the state,
    /// so this indexes the state itself: the JIT emits no null check for it, as it does for a
    /// fixed buffer reached through the pointer (one extra load in every handler). The index is
    /// unsigned so that an operand byte needs no sign extension.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref ulong Q(CpuState* s, int r) => ref ((ulong*)s)[(uint)r];

    /// <summary>Reads register operand <paramref name="r"/> (a byte offset for 8-bit operands).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Get<T>(CpuState* s, int r) where T : struct, ISz
    {
        if (T.Bits == 8) return ((byte*)s)[(uint)r];
        if (T.Bits == 16) return *(ushort*)((ulong*)s + (uint)r);
        if (T.Bits == 32) return *(uint*)((ulong*)s + (uint)r);
        return ((ulong*)s)[(uint)r];
    }

    /// <summary>Writes register operand <paramref name="r"/>: 8/16-bit merge, 32-bit zero-extends.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Set<T>(CpuState* s, int r, ulong v) where T : struct, ISz
    {
        if (T.Bits == 8) ((byte*)s)[(uint)r] = (byte)v;
        else if (T.Bits == 16) *(ushort*)((ulong*)s + (uint)r) = (ushort)v;
        else if (T.Bits == 32) ((ulong*)s)[(uint)r] = (uint)v;
        else ((ulong*)s)[(uint)r] = v;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long SignExtend<T>(ulong v) where T : struct, ISz
    {
        if (T.Bits == 8) return (sbyte)v;
        if (T.Bits == 16) return (short)v;
        if (T.Bits == 32) return (int)v;
        return (long)v;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong SignBit<T>() where T : struct, ISz => 1UL << (T.Bits - 1);
}
