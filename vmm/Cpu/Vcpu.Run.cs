using System.Runtime.CompilerServices;

namespace ToyVmm.Cpu;

// The interpreter loop. Guest-mode protocol (docs/DESIGN.md "vCPU modes", VcpuLink): EnterGuest on
// entry, then take requests before touching memory; requests are polled after every
// chain of blocks (at most ChainBudget instructions, Exec.ChainTo); ExitGuest before returning and around exits (port I/O, hypercalls).
public sealed unsafe partial class Vcpu
{
    /// <summary>
    /// Execute guest instructions until an exit or until about
    /// <paramref name="instructionLimit"/> more instructions have retired
    /// (checked at block boundaries). Enters guest mode on entry and leaves it on return.
    /// </summary>
    public VcpuExit Run(long instructionLimit = long.MaxValue)
    {
        CpuState* s = _s;
        if (s == null) throw new ObjectDisposedException(nameof(Vcpu));
        long limitAt = instructionLimit >= long.MaxValue - s->Retired ? long.MaxValue : s->Retired + Math.Max(0, instructionLimit);
        Link.EnterGuest();
        CodeCache.Enter(s);
        try
        {
            ServiceRequests(atBoundary: true);
            while (true)
            {
                if (s->ExitReason != ExitReasons.None)
                {
                    int why = s->ExitReason;
                    s->ExitReason = ExitReasons.None;
                    return new VcpuExit(why == ExitReasons.Halted ? VcpuExitKind.Halted : VcpuExitKind.StopRequested);
                }
                if (s->Retired >= limitAt) return new VcpuExit(VcpuExitKind.InstructionLimit);
                try
                {
                    Execute(limitAt);
                }
                catch (GuestFault f)
                {
                    string? error = OnFault(f);
                    if (error != null) return new VcpuExit(VcpuExitKind.VmError, error);
                }
                catch (VmErrorException e)
                {
                    s->CurOp = null;
                    return new VcpuExit(VcpuExitKind.VmError, e.Message);
                }
                catch (HostFailureException e)
                {
                    s->CurOp = null;
                    return new VcpuExit(VcpuExitKind.HostFailure, e.Message);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // A bug in an instruction or a device must not take the VMM down with it,
                    // nor be blamed on the guest: the VM ends as an internal error.
                    ulong rip = CurrentRip;
                    s->CurOp = null;
                    return new VcpuExit(VcpuExitKind.InternalError, $"internal interpreter error at RIP 0x{rip:x}: {e.GetType().Name}: {e.Message}");
                }
                MarkBoundary(s);   // CurOp is null here: after a chain, or after delivering a fault
                if (Link.HasRequests) ServiceRequests(atBoundary: true);
            }
        }
        finally
        {
            s->CurOp = null;
            CodeCache.Leave(s);
            Link.ExitGuest();
        }
    }

    /// <summary>
    /// Between blocks, with <c>CurOp</c> null and every access of the last block over: no block
    /// (compiled code always has one) and <see cref="AccessBoundary"/>, which the next access
    /// overwrites before it probes the TLB, so an invalidator can tell this vCPU holds no pointer
    /// (<see cref="IsQuiescentFor"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MarkBoundary(CpuState* s)
    {
        s->CurBlock = null;
        s->AccessVa = AccessBoundary;
    }

    private string? OnFault(GuestFault f)
    {
        CpuState* s = _s;
        Op* cur = s->CurOp;
        ulong rip, ret;
        if (cur != null)
        {
            rip = s->BlockVa + cur->RipOff;
            s->Retired += cur - Block.OpsOf(s->CurBlock);
            ret = rip;
            if (f.Software) { ret = rip + cur->Len; s->Retired++; }
        }
        else
        {
            rip = ret = s->Rip;
        }
        s->CurOp = null;
        s->Rip = rip;
        return DeliverFault(f, rip, ret);
    }

    /// <summary>Instructions at most per call into a block, chained blocks included.</summary>
    internal const int ChainBudget = 256;

    // Fully optimised from the first call: the loop runs for seconds, and an on-stack-replaced
    // tier-0 body measured ~14% of a cpusuite run.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Execute(long limitAt)
    {
        CpuState* s = _s;
        var link = Link;
        s->InstructionLimit = limitAt;
        while (true)
        {
            s->CurOp = null;
            MarkBoundary(s);
            // A block boundary: acknowledge a code-cache grace period (CodeCache.Reclaim.cs).
            if (Volatile.Read(ref *s->CodeEpochNow) != s->CodeEpochSeen) CodeCache.Acknowledge(s);
            Block* b = FindBlock(s);
            s->CurBlock = b;
            s->BlockVa = b->Va;
            Op* first = Block.OpsOf(b);
            s->CurOp = first;
            // Chained blocks (Exec.Chain) retire as they go; bounded so the stack stays shallow.
            s->ChainLimit = Math.Min(limitAt, s->Retired + ChainBudget);
            first->H(s, first);   // runs the block and the blocks chained after it
            s->Retired += (s->CurOp - Block.OpsOf(s->CurBlock)) + 1;
            if (s->ExitReason != ExitReasons.None || link.HasRequests || s->Retired >= limitAt)
            {
                s->CurOp = null;
                return;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Block* FindBlock(CpuState* s)
    {
        ulong rip = s->Rip;
        ulong tag = rip ^ (s->TlbCplBit << 52);
        JumpEntry* j = s->Jump + ((rip ^ (rip >> 10)) & (JumpSize - 1));
        Block* b = j->Block;
        if (j->Tag == tag && b->Valid != 0) return b;
        b = LookupOrDecode(rip);
        j->Tag = tag;
        j->Block = b;
        return b;
    }
}
