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
}
