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

    /// <summary>The vCPU's link (its requests are polled at a region's edges); null once the vCPU is gone.</summary>
    public static ToyVmm.Mmu.Secondary.VcpuLink LinkOf(CpuState* s) =>
        Unsafe.As<ToyVmm.Mmu.Secondary.VcpuLink>(System.Runtime.InteropServices.GCHandle.FromIntPtr(s->LinkHandle).Target)!;

    /// <summary>
    /// Where compiled code may go on without the run loop: the instruction limit, or
    /// <see cref="BlockCompiler.RegionBudget"/> instructions past the run loop's entry (its chain
    /// limit allows <see cref="Vcpu.ChainBudget"/> of them). Anchored at the run loop's entry, so
    /// a chain of compiled blocks, each entered from the last, returns within the budget too.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long Limit(CpuState* s) =>
        Math.Min(s->InstructionLimit, s->ChainLimit + (BlockCompiler.RegionBudget - Vcpu.ChainBudget));

    /// <summary>
    /// The end of a compiled block: Exec.Chain (jump-cache probe, the successor still valid,
    /// the exit reason clear, the finished block counted, CurOp null, CurBlock, BlockVa, then
    /// CurOp, the order the shootdown reads them in) with one difference: past the run loop's
    /// chain limit it still goes on, up to <see cref="Limit"/>, when no link request is pending.
    /// A successor that is interpreted then ends its chain at its own end (its Exec.Chain sees
    /// the chain limit passed), so the run loop is reached within one interpreted block.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Op* Chain(CpuState* s, Op* op)
    {
        ulong rip = s->Rip;
        JumpEntry* j = s->Jump + ((rip ^ (rip >> 10)) & (Vcpu.JumpSize - 1));
        Block* b = j->Block;
        if (j->Tag != (rip ^ (s->TlbCplBit << 52)) || b == null || b->Valid == 0) return null;
        long retired = s->Retired + (long)((ulong)((byte*)op - (byte*)Block.OpsOf(s->CurBlock)) >> 5) + 1;
        if (retired >= s->ChainLimit && !MayGoOn(s, retired)) return null;
        if (s->ExitReason != ExitReasons.None) return null;
        s->Retired = retired;
        s->CurOp = null;
        s->CurBlock = b;
        s->BlockVa = b->Va;
        Op* first = Block.OpsOf(b);
        s->CurOp = first;
        return first->H(s, first);
    }

    /// <summary>Past the chain limit: within <see cref="Limit"/> and no link request pending.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool MayGoOn(CpuState* s, long retired) => retired < Limit(s) && !LinkOf(s).HasRequests;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static int Cond(CpuState* s, int cc) => Flags.Cond(s, cc) ? 1 : 0;
}
