using System.Diagnostics;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Secondary;

// The MMU-notifier side of the EPT-like MMU: what the host calls before and
// after it changes its page tables. See the protocol diagram in EptMmu.cs.
public sealed unsafe partial class EptMmu
{
    public bool InvalidateRangeStart(in InvalidateRange range)
    {
        if (!GfnSpan(range.Start, range.End, out ulong first, out ulong last)) return true;
        if (range.MayBlock) _mmuLock.Enter();
        else if (!_mmuLock.TryEnter()) return false;   // "would block": the host backs off and retries
        try
        {
            _seq.BeginLocked(first, last);
            ulong holders = ZapLocked(range.Start, range.End);
            if (holders != 0) FlushVcpusLocked(holders, first, last);
        }
        finally { _mmuLock.Exit(); }
        return true;
    }

    public void InvalidateRangeEnd(in InvalidateRange range)
    {
        if (!GfnSpan(range.Start, range.End, out ulong first, out ulong last)) return;
        var events = Events;
        long ended = events is null || range.StartTicks != 0 ? 0 : Stopwatch.GetTimestamp();
        lock (_mmuLock) _seq.EndLocked(first, last);
        // Start to end as the invalidating thread saw it: zap, shootdown, the host's PTE
        // change (a range nobody stamped: this end only).
        events?.InvalidateCompleted(range.Cause, range.Start.PageNumber, range.Pages, range.StartTicks != 0 ? range.StartTicks : ended, Stopwatch.GetTimestamp());
    }

    /// <summary>
    /// The broken-2008 variant's <c>invalidate_page</c>: the host calls it after
    /// it has already cleared the PTE. It zaps, but nothing stops a fault that
    /// found the page earlier from installing it afterwards.
    /// </summary>
    public void InvalidatePage(Hva address)
    {
        if (!GfnSpan(address.PageBase, address.PageBase.Add(Page.Size), out ulong first, out ulong last)) return;
        lock (_mmuLock)
        {
            ulong holders = ZapLocked(address.PageBase, address.PageBase.Add(Page.Size));
            if (holders != 0) FlushVcpusLocked(holders, first, last);
        }
    }

    public bool ClearFlushYoung(Hva start, Hva end)
    {
        bool young;
        if (!GfnSpan(start, end, out ulong first, out ulong last)) return false;
        lock (_mmuLock)
        {
            ulong holders = 0;
            young = ClearYoungLocked(start, end, ref holders);
            if (young) FlushVcpusLocked(holders, first, last);  // later accesses must fill the TLB and set A again
        }
        return young;
    }

    public bool ClearYoung(Hva start, Hva end)
    {
        ulong holders = 0;
        lock (_mmuLock) return ClearYoungLocked(start, end, ref holders);
    }

    public bool TestYoung(Hva address)
    {
        foreach (var slot in _slots.Slots)
            if (slot.GfnsOf(address.PageBase, address.PageBase.Add(Page.Size), out ulong gfn, out _))
                return _ept.Lookup(gfn).IsAccessed;
        return false;
    }

    public void Release()
    {
        long started = Stopwatch.GetTimestamp();
        ulong pages = 0, firstPage = ulong.MaxValue;
        lock (_mmuLock)
        {
            foreach (var slot in _slots.Slots)
            {
                ZapLocked(slot.HvaStart, slot.HvaEnd);
                pages += (slot.HvaEnd.Value - slot.HvaStart.Value) >> Page.Shift;
                firstPage = Math.Min(firstPage, slot.HvaStart.PageNumber);
            }
            FlushVcpusLocked(ulong.MaxValue, 0, ulong.MaxValue);
        }
        if (pages != 0) Events?.InvalidateCompleted(InvalidateCause.Teardown, firstPage, pages, started, Stopwatch.GetTimestamp());
    }

    private bool GfnSpan(Hva start, Hva end, out ulong first, out ulong last)
    {
        first = ulong.MaxValue; last = 0;
        foreach (var slot in _slots.Slots)
        {
            if (!slot.GfnsOf(start, end, out ulong f, out ulong l)) continue;
            first = Math.Min(first, f); last = Math.Max(last, l);
        }
        return first <= last;
    }

    /// <summary>
    /// Zap every entry whose host page lies in [start, end); a dirty bit goes to
    /// the host page first. Returns the TLB holders of the zapped entries (0 when
    /// nothing was mapped: no vCPU needs to flush).
    /// </summary>
    private ulong ZapLocked(Hva start, Hva end)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "zapping needs the MMU lock");
        ulong holders = 0;
        foreach (var slot in _slots.Slots)
        {
            if (!slot.GfnsOf(start, end, out ulong first, out ulong last)) continue;
            var zap = new ZapVisitor(this);
            _ept.ForEachPresent(first, last, ref zap);
            holders |= zap.Holders;
        }
        return holders;
    }

    private bool ClearYoungLocked(Hva start, Hva end, ref ulong holders)
    {
        bool young = false;
        ulong h = 0;
        foreach (var slot in _slots.Slots)
        {
            if (!slot.GfnsOf(start, end, out ulong first, out ulong last)) continue;
            var aging = new ClearYoungVisitor(_ept);
            _ept.ForEachPresent(first, last, ref aging);
            young |= aging.Young; h |= aging.Holders;
        }
        holders |= h;
        return young;
    }

    /// <summary>
    /// TLB shootdown of guest frames [<paramref name="firstGfn"/>, <paramref name="lastGfn"/>]:
    /// ask the vCPUs in <paramref name="holders"/> (EptEntry vCPU bits; every
    /// untracked vCPU always) to flush them, and return once none of them can
    /// use a translation of the range any more. A vCPU blocked on this lock has
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
    /// </remarks>
    private void FlushVcpusLocked(ulong holders, ulong firstGfn, ulong lastGfn)
    {
        var vcpus = _vcpus;
        var events = Events;
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
            if (tlb is null) { pending++; _shootdowns.Asked++; continue; }
            try
            {
                _shootdowns.Asked++;
                if (!tlb.MayHold(firstGfn, lastGfn))
                {
                    vcpus[i].CompleteRemotely(t); tickets[i] = -1; _shootdowns.NotHeld++;
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
                    tickets[i] = -1; _shootdowns.Acknowledged++;
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
                        vcpus[i].CompleteRemotely(tickets[i]); tickets[i] = -1; _shootdowns.ShotDown++;
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
            _shootdowns.Waited++;
            vcpus[i].WaitForFlush(tickets[i]);
            events?.ShootdownCompleted(vcpus[i].Index, ShootdownStep.Waited, posted, Stopwatch.GetTimestamp());
        }
    }
}
