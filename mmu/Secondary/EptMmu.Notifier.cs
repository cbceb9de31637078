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
        var walk = _walker.Walk(new HvaRangeWalk(range.Start, range.End, range.MayBlock, FlushOnReturn: true, Pages: range.BatchPages), ref start);
        if (walk.Outcome == WalkOutcome.WouldBlock) return false;   // "would block": the host backs off and retries
        return true;
    }

    public void InvalidateRangeEnd(in InvalidateRange range)
    {
        var events = Events;
        long ended = events is null || range.StartTicks != 0 ? 0 : Stopwatch.GetTimestamp();
        var end = new InvalidateEndHandler(_seq);
        if (_walker.Walk(new HvaRangeWalk(range.Start, range.End, Pages: range.BatchPages), ref end).Outcome != WalkOutcome.Done) return;
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

    /// <summary>TLB shootdown of guest frames [<paramref name="firstGfn"/>, <paramref name="lastGfn"/>] (<see cref="VcpuShootdown"/>).</summary>
    private void FlushVcpusLocked(ulong holders, ulong firstGfn, ulong lastGfn)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "a shootdown runs under the MMU lock");
        VcpuShootdown.FlushLocked(_vcpus, Events, ref _shootdowns, holders, firstGfn, lastGfn);
    }
}
