using System.Diagnostics;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Secondary.Shadow;

// The MMU-notifier side of the shadow MMU: every callback is one walk of the
// shared SlotRangeWalker with a handler below, as EptMmu's. The per-slot work
// finds a guest frame's entries through the reverse map (ShadowMmu.Rmap.cs);
// the walker's flush on return then shoots the holders down exactly as EPT's
// does, before the host frees any frame.
public sealed unsafe partial class ShadowMmu
{
    public bool InvalidateRangeStart(in InvalidateRange range)
    {
        var start = new InvalidateStartHandler(this, ChangesContents(range.Cause));
        var walk = _walker.Walk(new HvaRangeWalk(range.Start, range.End, range.MayBlock, FlushOnReturn: true, Pages: range.BatchPages), ref start);
        return walk.Outcome != WalkOutcome.WouldBlock;
    }

    /// <summary>
    /// Whether the host operation can change the page's contents (the shadow pages
    /// of a guest table in the range must go). Reclaim and page-out bring the same
    /// bytes back from swap; DISCARD zeroes, unmap and teardown remove.
    /// </summary>
    private static bool ChangesContents(InvalidateCause cause) => cause is not (InvalidateCause.Reclaim or InvalidateCause.PageOut);

    public void InvalidateRangeEnd(in InvalidateRange range)
    {
        var events = Events;
        long ended = events is null || range.StartTicks != 0 ? 0 : Stopwatch.GetTimestamp();
        var end = new InvalidateEndHandler(_seq);
        if (_walker.Walk(new HvaRangeWalk(range.Start, range.End, Pages: range.BatchPages), ref end).Outcome != WalkOutcome.Done) return;
        events?.InvalidateCompleted(range.Cause, range.Start.PageNumber, range.Pages, range.StartTicks != 0 ? range.StartTicks : ended, Stopwatch.GetTimestamp());
    }

    /// <summary>The teaching protocol's <c>invalidate_page</c>: zaps after the host already cleared the PTE.</summary>
    public void InvalidatePage(Hva address)
    {
        var zap = new ZapHandler(this, contentsChange: false);
        _walker.Walk(new HvaRangeWalk(address.PageBase, address.PageBase.Add(Page.Size), FlushOnReturn: true), ref zap);
    }

    public bool ClearFlushYoung(Hva start, Hva end)
    {
        var aging = new YoungHandler(this, clear: true);
        _walker.Walk(new HvaRangeWalk(start, end, FlushOnReturn: true), ref aging);
        return aging.Young;
    }

    public bool ClearYoung(Hva start, Hva end)
    {
        var aging = new YoungHandler(this, clear: true);
        _walker.Walk(new HvaRangeWalk(start, end), ref aging);
        return aging.Young;
    }

    /// <summary>test_young, under the lock: the reverse map is not safe to read without it.</summary>
    public bool TestYoung(Hva address)
    {
        var test = new YoungHandler(this, clear: false);
        _walker.Walk(new HvaRangeWalk(address.PageBase, address.PageBase.Add(Page.Size)), ref test);
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

    /// <summary>
    /// Zap every entry of guest frames [first, last] found through the reverse map
    /// (their holders are returned for the walker's flush); when the contents may
    /// change, also the shadow pages of guest tables in the range (every TLB flushes).
    /// </summary>
    /// <summary>Ranges of fewer guest frames than this are zapped frame by frame (no list of keys).</summary>
    private const ulong SmallRange = 64;

    private ulong ZapRangeLocked(ulong firstGfn, ulong lastGfn, bool contentsChange)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "zapping needs the MMU lock");
        ulong holders = 0;
        if (lastGfn - firstGfn < SmallRange)
        {
            // The common one-page or few-page invalidation: probe each frame, allocate nothing.
            for (ulong gfn = firstGfn; ; gfn++)
            {
                holders |= ZapGfnLocked(gfn);
                if (gfn == lastGfn) break;
            }
        }
        else
            foreach (ulong gfn in KeysIn(_rmap, firstGfn, lastGfn)) holders |= ZapGfnLocked(gfn);
        if (contentsChange && _shadowed.Count != 0)
        {
            bool any = false;
            foreach (ulong gfn in KeysIn(_shadowed, firstGfn, lastGfn))
            {
                if (!_shadowed.TryGetValue(gfn, out var list)) continue;
                foreach (var page in list.ToArray()) ZapPageLocked(page);
                _shadowed.Remove(gfn);
                any = true;
            }
            if (any) FlushLocked(ulong.MaxValue, 0, ulong.MaxValue);
        }
        return holders;
    }

    private readonly struct InvalidateStartHandler(ShadowMmu mmu, bool contentsChange) : IGfnRangeHandler
    {
        public void OnLock(ulong firstGfn, ulong lastGfn) => mmu._seq.BeginLocked(firstGfn, lastGfn);
        public void OnLockBatch(ulong firstGfn, ulong lastGfn, ReadOnlySpan<ulong> gfns) => mmu._seq.BeginLocked(firstGfn, lastGfn, gfns);
        public ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn) => mmu.ZapRangeLocked(firstGfn, lastGfn, contentsChange);
    }

    private readonly struct InvalidateEndHandler(InvalidateSequence seq) : IGfnRangeHandler
    {
        public void OnLock(ulong firstGfn, ulong lastGfn) => seq.EndLocked(firstGfn, lastGfn);
        public void OnLockBatch(ulong firstGfn, ulong lastGfn, ReadOnlySpan<ulong> gfns) => seq.EndLocked(firstGfn, lastGfn, gfns);
        public ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn) => 0;
    }

    private readonly struct ZapHandler(ShadowMmu mmu, bool contentsChange) : IGfnRangeHandler
    {
        public void OnLock(ulong firstGfn, ulong lastGfn) { }
        public ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn) => mmu.ZapRangeLocked(firstGfn, lastGfn, contentsChange);
    }

    private struct ReleaseHandler(ShadowMmu mmu) : IGfnRangeHandler
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

    /// <summary>Aging: read (and with <c>clear</c>, clear) the accessed bits of every entry of each guest frame; the holders of young entries flush.</summary>
    private struct YoungHandler(ShadowMmu mmu, bool clear) : IGfnRangeHandler
    {
        public bool Young;

        public void OnLock(ulong firstGfn, ulong lastGfn) { }

        public ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn)
        {
            ulong holders = 0;
            foreach (ulong gfn in KeysIn(mmu._rmap, firstGfn, lastGfn))
            {
                var r = mmu._rmap[gfn];
                if (r.Direct)
                {
                    var e = mmu._direct.Lookup(gfn);
                    if (clear ? mmu._direct.TestAndClearAccessed(gfn) : e.IsAccessed) { Young = true; holders |= e.Vcpus | EptEntry.Read; }
                }
                foreach (var (page, index) in r.Leaves)
                {
                    ulong old = clear ? Interlocked.And(ref page.Leaf![index], ~EptEntry.Accessed) : Volatile.Read(ref page.Leaf![index]);
                    if ((old & (EptEntry.Read | EptEntry.Accessed)) == (EptEntry.Read | EptEntry.Accessed))
                    {
                        Young = true;
                        holders |= (old & EptEntry.VcpuMask) | EptEntry.Read;
                    }
                }
            }
            return clear ? holders : 0;
        }
    }
}
