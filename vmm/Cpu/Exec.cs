using System.Runtime.CompilerServices;

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
    /// <c>s->Rip</c>; go on as <see cref="ChainTo"/> does.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Op* Chain(CpuState* s, Op* op) => ChainTo(s, op, s->Rip);

    /// <summary>
    /// Block chaining: <paramref name="op"/>, the last instruction of the current block, jumps to
    /// <paramref name="rip"/>: store it as <c>s->Rip</c> and go straight on into the successor
    /// block when the jump cache knows it (same tag as the run loop's lookup, still valid), the
    /// exit reason is clear and the chain budget allows, and count the finished block as retired.
    /// Otherwise return null and let the run loop look the block up. The new RIP comes in a
    /// register, so the jump-cache probe does not wait for the store to <c>s->Rip</c>.
    /// Link requests (TLB flushes, stop) are not polled here but by the run loop after every
    /// chain: a chain is bounded by <c>ChainLimit</c> (at most <see cref="Vcpu.ChainBudget"/>
    /// instructions), so a request is seen within one chain budget, as compiled code promises
    /// (mmu/LOCKING.md), and the chain pays no load of the link per block.
    /// Order for the TLB shootdown (TlbShootdown.cs): CurOp null, CurBlock, then CurOp of
    /// the new block's first op. The bound also keeps the native stack shallow where the JIT
    /// does not make the calls tail calls.
    /// </summary>
    /// <summary>
    /// <see cref="ChainTo"/> for a direct branch (jmp rel, jcc, fused compare-and-branch), which
    /// changes neither CPL nor translation: a block that branches back to its own start runs
    /// again without the jump-cache probe when it is still valid (a loop of one block, the
    /// commonest inner loop), under the same exit-reason and chain-budget checks. The jump
    /// cache would name the same block: its entry for this RIP and CPL can only have changed
    /// through a flush, and a flush inside a block (a request serviced on a TLB miss) drops
    /// host pointers, never the guest's translation of RIP. CurBlock and BlockVa stay; CurOp
    /// moves from the branch op to op 0 of the same block, as <see cref="Next"/> moves it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Op* Branch(CpuState* s, Op* op, ulong rip)
    {
        Block* cur = s->CurBlock;
        if (rip != s->BlockVa || cur->Valid == 0) return ChainTo(s, op, rip);
        s->Rip = rip;
        Op* first = Block.OpsOf(cur);
        long retired = s->Retired + (long)((ulong)((byte*)op - (byte*)first) >> 5) + 1;
        if (retired >= s->ChainLimit || s->ExitReason != ExitReasons.None) return null;
        s->Retired = retired;
        s->CurOp = first;
        return first->H(s, first);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Op* ChainTo(CpuState* s, Op* op, ulong rip)
    {
        s->Rip = rip;
        JumpEntry* j = s->Jump + ((rip ^ (rip >> 10)) & (Vcpu.JumpSize - 1));
        Block* b = j->Block;
        if (j->Tag != (rip ^ (s->TlbCplBit << 52)) || b == null || b->Valid == 0) return null;
        long retired = s->Retired + (long)((ulong)((byte*)op - (byte*)Block.OpsOf(s->CurBlock)) >> 5) + 1;
        if (retired >= s->ChainLimit || s->ExitReason != ExitReasons.None) return null;
        s->Retired = retired;
        s->CurOp = null;
        s->CurBlock = b;
        s->BlockVa = b->Va;
        Op* first = Block.OpsOf(b);
        s->CurOp = first;
        return first->H(s, first);
    }
}
