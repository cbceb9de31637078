using System.Diagnostics;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Secondary;

// The MMU-notifier side of every secondary MMU: what the host calls before and
// after it changes its page tables (the right column of the protocol diagram in
// SecondaryMmuCore.cs). Every callback is one walk of the shared SlotRangeWalker
// (slot by slot, under _mmuLock, flush on return) with a handler below; the
// per-slot work is the subclass's: ZapRangeLocked and AgeRange.
public abstract unsafe partial class SecondaryMmuCore
{
    /// <summary>
    /// Zap every entry of guest frames [<paramref name="firstGfn"/>, <paramref name="lastGfn"/>]
    /// (a dirty bit goes to the host page first); <paramref name="contentsChange"/>: the host may
    /// change the pages' bytes, so whatever was derived from them goes too (the shadow MMU's
    /// shadow pages of guest tables). Returns the TLB holders of what was zapped, with
    /// <see cref="EptEntry.Read"/> once anything was (0: no vCPU needs to flush).
    /// </summary>
    private protected abstract ulong ZapRangeLocked(ulong firstGfn, ulong lastGfn, bool contentsChange);

    /// <summary>
    /// Aging of guest frames [<paramref name="firstGfn"/>, <paramref name="lastGfn"/>]: set
    /// <paramref name="young"/> if an entry was accessed, and with <paramref name="clear"/> clear
    /// the accessed bits. Returns the holders of young entries (they flush, so later accesses
    /// set the bit again). Runs under the MMU lock unless <see cref="AgesLockless"/>.
    /// </summary>
    private protected abstract ulong AgeRange(ulong firstGfn, ulong lastGfn, bool clear, ref bool young);

    /// <summary>Whether test_young may read the accessed bits without the MMU lock (a racy read is all aging needs).</summary>
    private protected abstract bool AgesLockless { get; }

    /// <summary>
    /// Whether the host operation can change the page's contents. Reclaim and page-out
    /// bring the same bytes back from swap; DISCARD zeroes, unmap and teardown remove.
    /// </summary>
    private static bool ChangesContents(InvalidateCause cause) => cause is not (InvalidateCause.Reclaim or InvalidateCause.PageOut);

    public bool InvalidateRangeStart(in InvalidateRange range)
    {
        var start = new InvalidateStartHandler(this, ChangesContents(range.Cause));
        var walk = _walker.Walk(new HvaRangeWalk(range.Start, range.End, range.MayBlock, FlushOnReturn: true, Pages: range.BatchPages), ref start);
        return walk.Outcome != WalkOutcome.WouldBlock;   // "would block": the host backs off and retries
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
        var zap = new ZapHandler(this, contentsChange: false);
        _walker.Walk(new HvaRangeWalk(address.PageBase, address.PageBase.Add(Page.Size), FlushOnReturn: true), ref zap);
    }

    /// <summary>Clear the accessed bits of the range; flush the vCPUs that held a young entry, so later accesses set A again.</summary>
    public bool ClearFlushYoung(Hva start, Hva end)
    {
        var aging = new AgeHandler(this, clear: true);
        _walker.Walk(new HvaRangeWalk(start, end, FlushOnReturn: true), ref aging);
        return aging.Young;
    }

    public bool ClearYoung(Hva start, Hva end)
    {
        var aging = new AgeHandler(this, clear: true);
        _walker.Walk(new HvaRangeWalk(start, end), ref aging);
        return aging.Young;
    }

    public bool TestYoung(Hva address)
    {
        var test = new AgeHandler(this, clear: false);
        _walker.Walk(new HvaRangeWalk(address.PageBase, address.PageBase.Add(Page.Size), Lockless: AgesLockless), ref test);
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

    // The handlers are structs, so that a walk allocates nothing; all run with
    // _mmuLock held by the walker but a lockless test_young.

    /// <summary>invalidate_range_start: count the range in progress (on-lock), then zap each slot's part.</summary>
    private readonly struct InvalidateStartHandler(SecondaryMmuCore mmu, bool contentsChange) : IGfnRangeHandler
    {
        public void OnLock(ulong firstGfn, ulong lastGfn) => mmu._seq.BeginLocked(firstGfn, lastGfn);
        public void OnLockBatch(ulong firstGfn, ulong lastGfn, ReadOnlySpan<ulong> gfns) => mmu._seq.BeginLocked(firstGfn, lastGfn, gfns);
        public ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn) => mmu.ZapRangeLocked(firstGfn, lastGfn, contentsChange);
    }

    /// <summary>invalidate_range_end: move the sequence on and drop the range (on-lock); nothing per slot.</summary>
    private readonly struct InvalidateEndHandler(InvalidateSequence seq) : IGfnRangeHandler
    {
        public void OnLock(ulong firstGfn, ulong lastGfn) => seq.EndLocked(firstGfn, lastGfn);
        public void OnLockBatch(ulong firstGfn, ulong lastGfn, ReadOnlySpan<ulong> gfns) => seq.EndLocked(firstGfn, lastGfn, gfns);
        public ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn) => 0;
    }

    /// <summary>Zap each slot's part (invalidate_page, slot removal, disposal).</summary>
    private readonly struct ZapHandler(SecondaryMmuCore mmu, bool contentsChange) : IGfnRangeHandler
    {
        public void OnLock(ulong firstGfn, ulong lastGfn) { }
        public ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn) => mmu.ZapRangeLocked(firstGfn, lastGfn, contentsChange);
    }

    /// <summary>release: zap every slot, have every vCPU flush; counts the host pages the slots cover (for the teardown figure).</summary>
    private struct ReleaseHandler(SecondaryMmuCore mmu) : IGfnRangeHandler
    {
        public ulong Pages;
        public ulong FirstPage = ulong.MaxValue;

        public void OnLock(ulong firstGfn, ulong lastGfn) { }

        public ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn)
        {
            mmu.ZapRangeLocked(firstGfn, lastGfn, contentsChange: true);
            Pages += slot.Bytes >> Page.Shift;
            FirstPage = Math.Min(FirstPage, slot.HvaStart.PageNumber);
            return ulong.MaxValue;
        }
    }

    /// <summary>clear_young, clear_flush_young, test_young: the subclass's aging of each slot's part.</summary>
    private struct AgeHandler(SecondaryMmuCore mmu, bool clear) : IGfnRangeHandler
    {
        public bool Young;

        public void OnLock(ulong firstGfn, ulong lastGfn) { }

        public ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn)
        {
            ulong holders = mmu.AgeRange(firstGfn, lastGfn, clear, ref Young);
            return clear ? holders : 0;
        }
    }
}
