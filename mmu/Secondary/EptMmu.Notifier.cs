using System.Diagnostics;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Secondary;

// The MMU-notifier side of the EPT-like MMU: what the host calls before and
// after it changes its page tables. See the protocol diagram in EptMmu.cs.
// Every callback is one walk of the shared SlotRangeWalker (slot by slot,
// under _mmuLock, flush on return) with a handler from EptMmu.Handlers.cs.
public sealed unsafe partial class EptMmu
{
    public bool InvalidateRangeStart(in InvalidateRange range)
    {
        var start = new InvalidateStartHandler(this);
        var walk = _walker.Walk(new HvaRangeWalk(range.Start, range.End, range.MayBlock, FlushOnReturn: true), ref start);
        if (walk.Outcome == WalkOutcome.WouldBlock) return false;   // "would block": the host backs off and retries
        return true;
    }

    public void InvalidateRangeEnd(in InvalidateRange range)
    {
        var events = Events;
        long ended = events is null || range.StartTicks != 0 ? 0 : Stopwatch.GetTimestamp();
        var end = new InvalidateEndHandler(_seq);
        if (_walker.Walk(new HvaRangeWalk(range.Start, range.End), ref end).Outcome != WalkOutcome.Done) return;
        // Start to end as the invalidating thread saw it: zap, shootdown, the host's PTE
        // change (a range nobody stamped: this end only).
        events?.InvalidateCompleted(range.Cause, range.Start.PageNumber, range.Pages, range.StartTicks != 0 ? range.StartTicks : ended, Stopwatch.GetTimestamp());
    }

    /// <summary>
    /// The teaching protocol's <c>invalidate_page</c> (<see cref="Broken2008Protocol"/>):
    /// the host calls it after it has already cleared the PTE. It zaps, but
    /// nothing stops a fault that found the page earlier from installing it afterwards.
    /// </summary>
    public void InvalidatePage(Hva address)
    {
        var zap = new ZapHandler(this);
        _walker.Walk(new HvaRangeWalk(address.PageBase, address.PageBase.Add(Page.Size), FlushOnReturn: true), ref zap);
    }

    /// <summary>Clear the accessed bits of the range; flush the vCPUs that held a young entry, so later accesses set A again.</summary>
    public bool ClearFlushYoung(Hva start, Hva end)
    {
        var aging = new ClearYoungHandler(_ept);
        _walker.Walk(new HvaRangeWalk(start, end, FlushOnReturn: true), ref aging);
        return aging.Young;
    }

    public bool ClearYoung(Hva start, Hva end)
    {
        var aging = new ClearYoungHandler(_ept);
        _walker.Walk(new HvaRangeWalk(start, end), ref aging);
        return aging.Young;
    }

    public bool TestYoung(Hva address)
    {
        var test = new TestYoungHandler(_ept);
        _walker.Walk(new HvaRangeWalk(address.PageBase, address.PageBase.Add(Page.Size), Lockless: true), ref test);
        return test.Young;
    }

    /// <summary>The address space is being torn down: zap everything and flush every vCPU.</summary>
    public void Release()
    {
        long started = Stopwatch.GetTimestamp();
        var release = new ReleaseHandler(this);
        _walker.Walk(new HvaRangeWalk(new Hva(0), new Hva(ulong.MaxValue), FlushOnReturn: true), ref release);
        if (release.Pages != 0) Events?.InvalidateCompleted(InvalidateCause.Teardown, release.FirstPage, release.Pages, started, Stopwatch.GetTimestamp());
    }

    void IRemoteTlbFlush.FlushRemoteTlbsLocked(ulong holders, ulong firstGfn, ulong lastGfn)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "a walk flushes with the MMU lock held");
        FlushVcpusLocked(holders, firstGfn, lastGfn);
    }

    /// <summary>
    /// Zap every present entry of guest frames [first, last]; a dirty bit goes to
    /// the host page first. Returns the TLB holders of the zapped entries (0 when
    /// nothing was mapped: no vCPU needs to flush).
    /// </summary>
    private ulong ZapGfnsLocked(ulong firstGfn, ulong lastGfn)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "zapping needs the MMU lock");
        var zap = new ZapVisitor(this);
        _ept.ForEachPresent(firstGfn, lastGfn, ref zap);
        return zap.Holders;
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
