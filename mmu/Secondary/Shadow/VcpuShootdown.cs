using System.Diagnostics;
using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Mmu.Secondary.Shadow;

/// <summary>
/// The TLB shootdown of a secondary MMU, step for step the EPT MMU's
/// (<c>EptMmu.FlushVcpusLocked</c>, mmu/LOCKING.md "TLB shootdown"), as a
/// function of the vCPU list so that the shadow MMU flushes exactly as EPT does.
/// </summary>
/// <remarks>
/// Called with the caller's MMU lock held. A vCPU blocked on that lock has left
/// guest mode first, so no wait can deadlock. (EPT keeps its own copy for now;
/// it can move onto this one unchanged.)
/// </remarks>
public static class VcpuShootdown
{
    /// <summary>
    /// Ask the vCPUs in <paramref name="holders"/> (EptEntry vCPU bits; every untracked vCPU always)
    /// to flush guest frames [<paramref name="firstGfn"/>, <paramref name="lastGfn"/>], and return once
    /// none of them can use a translation of the range any more.
    /// </summary>
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
