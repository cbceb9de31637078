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
    ///   2. (a vCPU pinned to the CPU this thread runs on is not running: it goes
    ///      to step 3 at once, before the others' spin; every vCPU posted to is
    ///      kicked out of its chain of blocks right after its post; one on another
    ///      CPU that answered while step 2a ran is done before step 1 reads its filter)
    ///      it acknowledges within a short spin (a running vCPU does at its
    ///      next block boundary); the spin ends early when no pending vCPU's
    ///      progress counter moves (all descheduled);
    ///   3. its entries are shot down from here, then a process-wide barrier
    ///      (membarrier: the IPI of a real TLB shootdown; aimed at the vCPUs' CPUs
    ///      alone when every one judged is pinned) shows it executing an
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
        // The CPU this thread runs on, when some vCPU is pinned: a vCPU pinned there is not
        // running now (unless it is this very thread, the vCPU's own hypercall). Read with
        // sched_getcpu it is a hint only (this thread may move right after), and what completes
        // a flush is still the barrier and the quiescence check of step 3. This thread pinned
        // there itself (ThreadCpuPin) cannot move: no barrier is needed for those vCPUs at all.
        bool anyPinned = false;
        for (int i = 0; i < vcpus.Length; i++) anyPinned |= vcpus[i].PinnedCpu >= 0;
        int own = anyPinned ? ThreadCpuPin.Current : -1;
        int here = own >= 0 ? own : anyPinned ? TargetedBarrier.CurrentCpu() : -1;
        int me = here >= 0 ? Environment.CurrentManagedThreadId : 0;
        Span<bool> local = vcpus.Length <= 64 ? stackalloc bool[vcpus.Length] : new bool[vcpus.Length];
        for (int i = 0; i < vcpus.Length; i++)
            local[i] = here >= 0 && vcpus[i].PinnedCpu == here && vcpus[i].ThreadId != me;
        // Every post goes out, each vCPU that may be running kicked out of its chain right after
        // its own post, before this thread reads anything else of theirs: a running vCPU's answer
        // then travels while this thread looks at its own CPU's vCPUs and at the others' filters.
        // On a host whose cores trade a cache line in a few hundred nanoseconds, doing it vCPU
        // by vCPU put a run of line transfers ahead of the post each running vCPU waits for.
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < vcpus.Length; i++)
            {
                if (local[i] != (pass == 1)) continue;
                ulong bit = EptEntry.VcpuBit(vcpus[i].Index);
                tickets[i] = bit == 0 || (holders & bit) != 0 ? vcpus[i].RequestFlush(firstGfn, lastGfn) : -1;
                progress[i] = -1;
                if (tickets[i] < 0 || local[i]) continue;
                var tlb = vcpus[i].PinTlb();
                if (tlb is null) continue;
                try { tlb.Kick(); }   // a hint: a running vCPU leaves its chain at the next block and acknowledges there
                finally { vcpus[i].UnpinTlb(); }
            }
        // 1 and 2a for this CPU's vCPUs first (their lines are in this core's cache). A vCPU
        // pinned to this CPU cannot acknowledge before this thread gives up the core, so step 3
        // is tried for it at once, with the barrier aimed at this CPU, which interrupts nobody
        // (while the running vCPUs answer the posts), or with none when this thread is pinned
        // there too (mmu/LOCKING.md "An invalidator pinned beside the vCPU"). One not done here
        // is inside an access, and stays there until it runs again: step 3 does not look at it
        // a second time, step 4 waits for it.
        int pending = 0;
        bool localWork = false;
        if (here >= 0)
        {
            pending = Filter(vcpus, events, ref counts, tickets, progress, local, true, firstGfn, lastGfn, gfns, posted);
            localWork = pending > 0;
            if (localWork) pending -= ShootDownAndCheckLocked(vcpus, events, ref counts, tickets, local, true, firstGfn, lastGfn, posted, barrier: own < 0);
        }
        // 1 for the others, but after 2a only those that have not acknowledged meanwhile: a
        // running vCPU answers within a few hundred nanoseconds, and its filter and progress
        // counter are lines of the other core's, whose reads would only stand between its
        // answer and us. (With no 2a, the posts are too fresh for an answer: not looked for.)
        for (int i = 0; localWork && i < vcpus.Length; i++)
        {
            if (tickets[i] < 0 || local[i] || !vcpus[i].IsFlushed(tickets[i])) continue;
            tickets[i] = -1; counts.Asked++; counts.Acknowledged++;
            events?.ShootdownCompleted(vcpus[i].Index, ShootdownStep.Acknowledged, posted, Stopwatch.GetTimestamp());
        }
        pending += Filter(vcpus, events, ref counts, tickets, progress, local, false, firstGfn, lastGfn, gfns, posted);
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
        ShootDownAndCheckLocked(vcpus, events, ref counts, tickets, local, false, firstGfn, lastGfn, posted);
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

    /// <summary>
    /// Step 1 for the posted vCPUs whose <paramref name="local"/> entry is <paramref name="want"/>: one
    /// whose TLB filter says it never took a pointer into the range is done; the others stay
    /// pending, with their progress counter read as of now.
    /// </summary>
    /// <returns>The vCPUs left pending.</returns>
    private static int Filter(VcpuLink[] vcpus, IMmuEventSink? events, ref ShootdownCounts counts, Span<long> tickets, Span<long> progress,
        ReadOnlySpan<bool> local, bool want, ulong firstGfn, ulong lastGfn, ReadOnlySpan<ulong> gfns, long posted)
    {
        int pending = 0;
        for (int i = 0; i < vcpus.Length; i++)
        {
            if (tickets[i] < 0 || local[i] != want) continue;
            counts.Asked++;
            var tlb = vcpus[i].PinTlb();
            if (tlb is null) { pending++; continue; }
            try
            {
                if (gfns.IsEmpty ? !tlb.MayHold(firstGfn, lastGfn) : !tlb.MayHoldAny(gfns))
                {
                    vcpus[i].CompleteRemotely(tickets[i]); tickets[i] = -1; counts.NotHeld++;
                    events?.ShootdownCompleted(vcpus[i].Index, ShootdownStep.NeverHeld, posted, Stopwatch.GetTimestamp());
                }
                else
                {
                    pending++; progress[i] = tlb.Progress;
                }
            }
            finally { vcpus[i].UnpinTlb(); }
        }
        return pending;
    }

    /// <summary>
    /// Step 3 for the pending vCPUs (those whose <paramref name="mask"/> entry is <paramref name="want"/>, when it is not empty):
    /// clear their entries of the range from here, run the barrier, and complete each one
    /// seen quiescent for the range. The barrier is aimed at the pinned vCPUs' CPUs, one call
    /// per distinct CPU, when every vCPU concerned is pinned and the targeted barrier is
    /// available; otherwise (or when a targeted call is refused) it is process-wide.
    /// </summary>
    /// <returns>The vCPUs completed.</returns>
    /// <param name="barrier">False only for vCPUs pinned to the CPU this thread has pinned itself to: none of them
    /// can be running, and each one's last stores were made on this CPU, so no barrier is needed to judge them.</param>
    private static int ShootDownAndCheckLocked(VcpuLink[] vcpus, IMmuEventSink? events, ref ShootdownCounts counts, Span<long> tickets,
        ReadOnlySpan<bool> mask, bool want, ulong firstGfn, ulong lastGfn, long posted, bool barrier = true)
    {
        bool shot = false, pinned = true;
        Span<int> cpus = stackalloc int[8];
        int ncpus = 0;
        for (int i = 0; i < vcpus.Length; i++)
        {
            if (tickets[i] < 0 || !mask.IsEmpty && mask[i] != want) continue;
            var tlb = vcpus[i].PinTlb();
            if (tlb is null) continue;
            try { tlb.ShootDown(firstGfn, lastGfn); shot = true; }
            finally { vcpus[i].UnpinTlb(); }
            // Pinned before it first entered guest mode, so a vCPU in guest mode runs only there
            // (as long as nobody else changes its affinity: mmu/LOCKING.md).
            int cpu = vcpus[i].PinnedCpu;
            if (cpu < 0) { pinned = false; continue; }
            if (cpus[..ncpus].Contains(cpu)) continue;
            if (ncpus == cpus.Length) pinned = false; else cpus[ncpus++] = cpu;
        }
        if (!shot) return 0;
        if (barrier) Barrier(ref counts, pinned ? cpus[..ncpus] : default);
        else counts.SameCpu += ncpus;
        int done = 0;
        for (int i = 0; i < vcpus.Length; i++)
        {
            if (tickets[i] < 0 || !mask.IsEmpty && mask[i] != want) continue;
            var tlb = vcpus[i].PinTlb();
            if (tlb is null) continue;
            try
            {
                if (tlb.IsQuiescentFor(firstGfn, lastGfn))
                {
                    vcpus[i].CompleteRemotely(tickets[i]); tickets[i] = -1; counts.ShotDown++; done++;
                    events?.ShootdownCompleted(vcpus[i].Index, ShootdownStep.ShotDown, posted, Stopwatch.GetTimestamp());
                }
            }
            finally { vcpus[i].UnpinTlb(); }
        }
        return done;
    }

    /// <summary>
    /// The barrier of step 3: aimed at each of <paramref name="cpus"/> (the pinned CPUs of every
    /// vCPU step 3 judges), or process-wide when <paramref name="cpus"/> is empty, the targeted
    /// barrier unavailable, or a targeted call refused (mmu/LOCKING.md "The barrier aimed at a
    /// pinned vCPU's CPU").
    /// </summary>
    private static void Barrier(ref ShootdownCounts counts, ReadOnlySpan<int> cpus)
    {
        if (!cpus.IsEmpty && TargetedBarrier.IsAvailable)
        {
            bool all = true;
            foreach (int cpu in cpus)
                if (!TargetedBarrier.TryOn(cpu)) { all = false; break; }
            if (all) { counts.TargetedBarriers += cpus.Length; return; }
        }
        Interlocked.MemoryBarrierProcessWide();
        counts.ProcessWideBarriers++;
    }
}
