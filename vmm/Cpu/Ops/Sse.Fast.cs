using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using V = System.Runtime.Intrinsics.Vector128<byte>;

namespace ToyVmm.Cpu.Ops;

/// <summary>
/// Fast variants of the hot SSE handlers: a register-source V2 has no call at all, and the
/// memory forms (V2 with a memory source, LoadZx, StoreM) probe the TLB themselves and fall
/// back to the general handler on a miss, a page crossing, a code page (stores) or a
/// misaligned m128 (which the general handler faults with #GP). None of them then saves
/// callee-saved registers; results and faults are the general handlers'.
/// </summary>
internal static unsafe partial class Sse
{
    /// <summary>TLB-hit load of <paramref name="width"/> (Op.X encoding), zero-extended; false when the general path must run.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool TryLoad(CpuState* s, ulong ea, int width, out V v)
    {
        if (width <= 1)
        {
            v = default;
            if (width == 0 && (ea & 15) != 0) return false;
            TlbEntry* e = s->TlbRead + ((ea >> 12) & Mem.TlbMask);
            if (e->Tag != ((ea & Mem.PageMask) | s->TlbCplBit) || (ea & 0xFFF) > 4096 - 16) return false;
            v = Vector128.Load((byte*)(ea + (ulong)e->Addend));
            return true;
        }
        ulong x;
        bool ok = width switch
        {
            2 => Mem.TryRead<S64>(s, ea, out x),
            3 => Mem.TryRead<S32>(s, ea, out x),
            _ => Mem.TryRead<S16>(s, ea, out x),
        };
        v = Vector128.CreateScalar(x).AsByte();
        return ok;
    }

    /// <summary>TLB-hit store of the low <paramref name="width"/> (Op.X encoding) of <paramref name="v"/>; false when the general path must run.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool TryStore(CpuState* s, ulong ea, int width, V v)
    {
        if (width <= 1)
        {
            if (width == 0 && (ea & 15) != 0) return false;
            byte* p = Mem.TryRmw(s, ea, 16);
            if (p == null) return false;
            v.Store(p);
            return true;
        }
        ulong x = v.AsUInt64().ToScalar();
        return width switch
        {
            2 => Mem.TryWrite<S64>(s, ea, x),
            3 => Mem.TryWrite<S32>(s, ea, x),
            _ => Mem.TryWrite<S16>(s, ea, x),
        };
    }

    /// <summary>dst = O(dst, src xmm, imm): V2 with a register source.</summary>
    public static Op* V2R<O>(CpuState* s, Op* op) where O : struct, IV2
    {
        Check(s);
        St(s, op->R, O.Do(Ld(s, op->R), Ld(s, op->R2), op->Imm));
        return Exec.Next(s, op);
    }

    /// <summary>dst = O(dst, m, imm): V2 with a memory source.</summary>
    public static Op* V2M<O>(CpuState* s, Op* op) where O : struct, IV2
    {
        Check(s);
        if (!TryLoad(s, Mem.Ea(s, op), op->X, out V b)) return V2Slow<O>(s, op);
        St(s, op->R, O.Do(Ld(s, op->R), b, op->Imm));
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* V2Slow<O>(CpuState* s, Op* op) where O : struct, IV2 => V2<O>(s, op);

    /// <summary>Loads from memory zero-extending the scalar (movss/movsd/movq/movd loads); register forms use V2 merges.</summary>
    public static Op* LoadZx(CpuState* s, Op* op)
    {
        Check(s);
        if (!TryLoad(s, Mem.Ea(s, op), op->X, out V v)) return LoadZxSlow(s, op);
        St(s, op->R, v);
        return Exec.Next(s, op);
    }

    /// <summary>Stores xmm R (width X) to memory.</summary>
    public static Op* StoreM(CpuState* s, Op* op)
    {
        Check(s);
        if (!TryStore(s, Mem.Ea(s, op), op->X, Ld(s, op->R))) return StoreMSlow(s, op);
        return Exec.Next(s, op);
    }

    /// <summary>V2's binding: the register-source or memory-source variant.</summary>
    private static delegate*<CpuState*, Op*, Op*> PickV2<O>(Op* op) where O : struct, IV2 => op->Y == 0 ? &V2R<O> : &V2M<O>;
}
