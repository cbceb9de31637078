using System.Diagnostics;
using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// The TLB shootdown every secondary MMU runs after it zaps entries
/// (mmu/LOCKING.md "TLB shootdown"), as a function of the MMU's vCPU list,
/// so that EPT and shadow flush by the same steps.
/// </summary>
public static class VcpuShootdown
{
    /// <summary>Longest time step 2 polls for acknowledgements (a running vCPU answers within a block).</summary>
    private static readonly long SpinTicks = Math.Max(1, Stopwatch.Frequency / 100_000);   // 10 us
    /// <summary>How often step 2 looks at the pending vCPUs' progress: a running vCPU retires a block in far less.</summary>
    private static readonly long StallTicks = Math.Max(1, Stopwatch.Frequency / 1_000_000); // 1 us

    private static long ProgressOf(VcpuLink vcpu)
    {
        var tlb = vcpu.PinTlb();
        if (tlb is null) return -1;
        try { return tlb.Progress; }
        finally { vcpu.UnpinTlb(); }
    }

    /// <summary>
    /// TLB shootdown of guest frames [<paramref name="firstGfn"/>, <paramref name="lastGfn"/>]:
    /// ask the vCPUs in <paramref name="holders"/> (EptEntry vCPU bits; every
    /// untracked vCPU always) to flush them, and return once none of them can
    /// use a translation of the range any more. A vCPU blocked on the caller's MMU lock has
    /// left guest mode first, so no wait can deadlock.
    /// </summary>
    /// <remarks>
    /// Each vCPU in guest mode is done by the first of these (cheapest first):
    /// <code>
    ///   1. its TLB filter says it never took a pointer into the range (a
    ///      batch's listed frames, one by one) (a fill racing with the post
    ///      sees the request after its fence);
    ///   2. it acknowledges within a short spin (a running vCPU does at its
    ///      next block boundary); the spin ends early when no pending vCPU's
    ///      progress counter moves (all descheduled);
    ///   3. its entries are shot down from here, then a process-wide barrier
    ///      (membarrier: the IPI of a real TLB shootdown) shows it executing an
    ///      instruction that touches no guest memory, a load that checks its TLB
    ///      entry again after it (and discards what it read through a cleared one),
    ///      a plain store to a page outside the range or not yet begun, or between
    ///      blocks: its next access to the range reads the cleared TLB.
    ///      This is what a vCPU the host has descheduled answers;
    ///   4. otherwise it acknowledges (spin, then block until it does; block at
    ///      once when step 2 found every pending vCPU stalled, and ask the vCPUs
    ///      still running to yield their cores once).
    /// </code>
    /// Called with the caller's MMU lock held.
    /// </remarks>
    /// <param name="gfns">A batch's guest frames (sorted, in the range), which step 1 asks the filter about
    /// one by one; empty: every frame of the range.</param>
    public static void FlushLocked(VcpuLink[] vcpus, IMmuEventSink? events, ref ShootdownCounts counts, ulong holders, ulong firstGfn, ulong lastGfn,
        ReadOnlySpan<ulong> gfns = default)
    {
        long posted = events is null ? 0 : Stopwatch.GetTimestamp();
        Span<long> tickets = vcpus.Length <= 64 ? stackalloc long[vcpus.Length] : new long[vcpus.Length];
        Span<long> progress = vcpus.Length <= 64 ? stackalloc long[vcpus.Length] : new long[vcpus.Length];
        int pending = 0;
        for (int i = 0; i < vcpus.Length; i++)
        {
            ulong bit = EptEntry.VcpuBit(vcpus[i].Index);
            long t = bit == 0 || (holders & bit) != 0 ? vcpus[i].RequestFlush(firstGfn, lastGfn) : -1;
            tickets[i] = t;
            progress[i] = -1;
            if (t < 0) continue;
            var tlb = vcpus[i].PinTlb();
            if (tlb is null) { pending++; counts.Asked++; continue; }
            try
            {
                counts.Asked++;
                if (gfns.IsEmpty ? !tlb.MayHold(firstGfn, lastGfn) : !tlb.MayHoldAny(gfns))
                {
                    vcpus[i].CompleteRemotely(t); tickets[i] = -1; counts.NotHeld++;
                    events?.ShootdownCompleted(vcpus[i].Index, ShootdownStep.NeverHeld, posted, Stopwatch.GetTimestamp());
                }
                else { pending++; progress[i] = tlb.Progress; }
            }
            finally { vcpus[i].UnpinTlb(); }
        }
        if (pending == 0) return;
        // 2. A running vCPU acknowledges at its next block boundary, a few hundred
        // nanoseconds away: poll at that grain. Stop early once every vCPU still
        // pending has stopped making progress (descheduled: it cannot answer before
        // the host runs it again, and spinning here only keeps it off a core).
        long start = Stopwatch.GetTimestamp(), lastLook = start;
        bool allStalled = false;
        while (true)
        {
            Thread.SpinWait(1);
            pending = 0;
            for (int i = 0; i < vcpus.Length; i++)
            {
                if (tickets[i] >= 0 && vcpus[i].IsFlushed(tickets[i]))
                {
                    tickets[i] = -1; counts.Acknowledged++;
                    events?.ShootdownCompleted(vcpus[i].Index, ShootdownStep.Acknowledged, posted, Stopwatch.GetTimestamp());
                }
                if (tickets[i] >= 0) pending++;
            }
            if (pending == 0) return;
            long now = Stopwatch.GetTimestamp();
            bool spun = now - start >= SpinTicks;
            if (!spun && now - lastLook < StallTicks) continue;
            lastLook = now;
            allStalled = true;
            for (int i = 0; i < vcpus.Length; i++)
            {
                if (tickets[i] < 0) continue;
                // Still posted and no block retired: not running. A vCPU that has taken the
                // request (HasRequests clear) is acknowledging right now.
                long p = ProgressOf(vcpus[i]);
                if (p < 0 || p != progress[i] || !vcpus[i].HasRequests) allStalled = false;
                progress[i] = p;
            }
            if (allStalled || spun) break;   // the last look decides how step 4 waits
        }
        // 3. Shoot the entries down from here; a quiescent vCPU is then done.
        bool shot = false;
        for (int i = 0; i < vcpus.Length; i++)
        {
            if (tickets[i] < 0) continue;
            var tlb = vcpus[i].PinTlb();
            if (tlb is null) continue;
            try { tlb.ShootDown(firstGfn, lastGfn); shot = true; }
            finally { vcpus[i].UnpinTlb(); }
        }
        if (shot)
        {
            Interlocked.MemoryBarrierProcessWide();
            for (int i = 0; i < vcpus.Length; i++)
            {
                if (tickets[i] < 0) continue;
                var tlb = vcpus[i].PinTlb();
                if (tlb is null) continue;
                try
                {
                    if (tlb.IsQuiescentFor(firstGfn, lastGfn))
                    {
                        vcpus[i].CompleteRemotely(tickets[i]); tickets[i] = -1; counts.ShotDown++;
                        events?.ShootdownCompleted(vcpus[i].Index, ShootdownStep.ShotDown, posted, Stopwatch.GetTimestamp());
                    }
                }
                finally { vcpus[i].UnpinTlb(); }
            }
        }
        // 4. The rest are inside an access (or have no remote TLB): wait for them.
        // A stalled vCPU is waited for by blocking at once, which hands it this core;
        // the vCPUs still running are asked to yield theirs once, in case it is queued
        // behind one of them (the host balances its run queues only now and then).
        if (allStalled)
            for (int i = 0; i < vcpus.Length; i++)
                if (tickets[i] < 0 && vcpus[i].Mode == VcpuMode.InGuest) vcpus[i].RequestYield();
        for (int i = 0; i < vcpus.Length; i++)
        {
            if (tickets[i] < 0) continue;
            counts.Waited++;
            vcpus[i].WaitForFlush(tickets[i], spin: !allStalled);
            events?.ShootdownCompleted(vcpus[i].Index, ShootdownStep.Waited, posted, Stopwatch.GetTimestamp());
        }
    }
}
