using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Cpu;

/// <summary>
/// Threaded dispatch: a handler ends by calling the next op's handler in tail
/// position, so the JIT emits a tail jump from each handler instead of returning
/// to one shared dispatch loop (one indirect branch site per handler predicts far
/// better than a single site). Blocks are at most 65 ops, so the chain stays
/// shallow even where the JIT cannot make the call a tail call.
/// </summary>
internal static unsafe class Exec
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Op* Next(CpuState* s, Op* op)
    {
        op++;
        s->CurOp = op;
        return op->H(s, op);
    }

    /// <summary>
    /// Block chaining: <paramref name="op"/>, the last instruction of the current block, has set
    /// <c>s->Rip</c>; go straight on into the successor block when the jump cache knows it
    /// (same tag as the run loop's lookup, still valid), the block boundary checks pass
    /// (exit reason, link requests, instruction budget), and count the finished block as
    /// retired. Otherwise return null and let the run loop look the block up.
    /// Order for the TLB shootdown (TlbShootdown.cs): CurOp null, CurBlock, then CurOp of
    /// the new block's first op. Execute bounds a chain with <c>ChainLimit</c> (instructions),
    /// so the native stack stays bounded where the JIT does not make the calls tail calls.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Op* Chain(CpuState* s, Op* op)
    {
        ulong rip = s->Rip;
        JumpEntry* j = s->Jump + ((rip ^ (rip >> 10)) & (Vcpu.JumpSize - 1));
        Block* b = j->Block;
        if (j->Tag != (rip ^ (s->TlbCplBit << 52)) || b == null || b->Valid == 0) return null;
        long retired = s->Retired + (long)((ulong)((byte*)op - (byte*)Block.OpsOf(s->CurBlock)) >> 5) + 1;
        if (retired >= s->ChainLimit || s->ExitReason != ExitReasons.None) return null;
        // SAFETY: LinkHandle is a handle to the vCPU's VcpuLink, which outlives the CpuState.
        if (Unsafe.As<VcpuLink>(GCHandle.FromIntPtr(s->LinkHandle).Target)!.HasRequests) return null;
        s->Retired = retired;
        s->CurOp = null;
        s->CurBlock = b;
        s->BlockVa = b->Va;
        Op* first = Block.OpsOf(b);
        s->CurOp = first;
        return first->H(s, first);
    }
}
