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
    ///   1. its TLB filter says it never took a pointer into the range
    ///      (a fill racing with the post sees the request after its fence);
    ///   2. it acknowledges within a short spin (a running vCPU does at its
    ///      next block boundary);
    ///   3. its entries are shot down from here, then a process-wide barrier
    ///      (membarrier: the IPI of a real TLB shootdown) shows it executing an
    ///      instruction that touches no guest memory: its next access reads the
    ///      cleared TLB. This is what a vCPU the host has descheduled answers;
    ///   4. otherwise it acknowledges (spin, then block until it does).
    /// </code>
    /// Called with the caller's MMU lock held.
    /// </remarks>
    public static void FlushLocked(VcpuLink[] vcpus, IMmuEventSink? events, ref ShootdownCounts counts, ulong holders, ulong firstGfn, ulong lastGfn)
    {
        long posted = events is null ? 0 : Stopwatch.GetTimestamp();
        Span<long> tickets = vcpus.Length <= 64 ? stackalloc long[vcpus.Length] : new long[vcpus.Length];
        int pending = 0;
        for (int i = 0; i < vcpus.Length; i++)
        {
            ulong bit = EptEntry.VcpuBit(vcpus[i].Index);
            long t = bit == 0 || (holders & bit) != 0 ? vcpus[i].RequestFlush(firstGfn, lastGfn) : -1;
            tickets[i] = t;
            if (t < 0) continue;
            var tlb = vcpus[i].PinTlb();
            if (tlb is null) { pending++; counts.Asked++; continue; }
            try
            {
                counts.Asked++;
                if (!tlb.MayHold(firstGfn, lastGfn))
                {
                    vcpus[i].CompleteRemotely(t); tickets[i] = -1; counts.NotHeld++;
                    events?.ShootdownCompleted(vcpus[i].Index, ShootdownStep.NeverHeld, posted, Stopwatch.GetTimestamp());
                }
                else pending++;
            }
            finally { vcpus[i].UnpinTlb(); }
        }
        if (pending == 0) return;
        // 2. A running vCPU acknowledges within a block; give it a moment.
        for (int spin = 0; spin < 16 && pending > 0; spin++)
        {
            Thread.SpinWait(8);
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
        }
        if (pending == 0) return;
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
                    if (tlb.IsQuiescent)
                    {
                        vcpus[i].CompleteRemotely(tickets[i]); tickets[i] = -1; counts.ShotDown++;
                        events?.ShootdownCompleted(vcpus[i].Index, ShootdownStep.ShotDown, posted, Stopwatch.GetTimestamp());
                    }
                }
                finally { vcpus[i].UnpinTlb(); }
            }
        }
        // 4. The rest are inside an access (or have no remote TLB): wait for them.
        for (int i = 0; i < vcpus.Length; i++)
        {
            if (tickets[i] < 0) continue;
            counts.Waited++;
            vcpus[i].WaitForFlush(tickets[i]);
            events?.ShootdownCompleted(vcpus[i].Index, ShootdownStep.Waited, posted, Stopwatch.GetTimestamp());
        }
    }
}
