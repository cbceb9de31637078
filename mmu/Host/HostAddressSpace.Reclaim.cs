using System.Diagnostics;
using System.Runtime.CompilerServices;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Host;

/// <summary>What reclaim managed to do with one mapped page.</summary>
internal enum ReclaimUnmap
{
    /// <summary>The PTE now holds a swap entry (or nothing, for a clean never-written page).</summary>
    Unmapped,
    /// <summary>The page is no longer mapped there (a racing unmap or fault changed it).</summary>
    Gone,
    /// <summary>Someone holds a short-lived reference: leave it.</summary>
    Busy,
    /// <summary>Accessed since the last look (host PTE, a GUP release, or a secondary MMU): second chance.</summary>
    Young,
    /// <summary>Dirty, and swap is full or disabled.</summary>
    NoSwap,
    /// <summary>A non-blocking invalidation was refused; try later.</summary>
    WouldBlock,
}

// The reverse-map side of reclaim: reclaim found a frame on the LRU and
// follows its Owner here. The caller holds a reference to the frame (so the
// page-table check "does vpn still map f" is sound) and, to unmap, its page lock.

public sealed partial class HostAddressSpace
{
    /// <summary>Aging: was the page used since the last look? Clears the host accessed bit and asks the secondary MMUs (ClearYoung).</summary>
    internal bool TestAndClearYoung(uint f, ulong vpn, out bool gone)
    {
        EnterLock();
        try
        {
            var pte = _disposed ? Pte.None : _pt.Get(vpn);
            gone = !pte.IsPresent || pte.Frame != f;
            return !gone && TestAndClearYoungLocked(f, vpn, flush: false);
        }
        finally { ExitLock(); }
    }

    /// <summary>Most pages one reclaim invalidation covers: bounds how long faults in the run wait for it.</summary>
    internal const int MaxRunPages = 64;

    /// <summary>
    /// Most pages between two reclaimed pages of one run. The pages in such a gap are
    /// not reclaimed, but the run's invalidation zaps their secondary entries too (a
    /// present-page secondary fault later), so the gap is kept small.
    /// </summary>
    internal const int MaxRunGap = 8;

    /// <summary>
    /// Reclaim a batch of locked, referenced frames this space maps at the given pages
    /// (sorted by page, ascending): second chance for each, then the rest unmapped in
    /// runs of nearby pages, one invalidation (one notifier start and end, one zap and
    /// shootdown in each secondary MMU) per run, all under one hold of the lock.
    /// Writes each page's outcome to <paramref name="results"/>.
    /// </summary>
    internal void ReclaimBatch(ReadOnlySpan<uint> frames, ReadOnlySpan<ulong> vpns, bool checkYoung, bool mayBlock, Span<ReclaimUnmap> results)
    {
        Debug.Assert(frames.Length == vpns.Length && results.Length >= frames.Length, "one page and one result per frame");
        EnterLock();
        try
        {
            // A run: consecutive candidates of the batch, each at most MaxRunGap pages after
            // the one before, spanning fewer than MaxRunPages. A page of the batch that is not
            // a candidate (young, gone) ends the run, so its entries are not zapped. A busy
            // frame is found only inside the run's invalidation (UnmapForReclaimLocked):
            // a subscriber may hold a page reference that its zap gives back.
            int runStart = -1;
            for (int i = 0; i < frames.Length; i++)
            {
                uint f = frames[i];
                ulong vpn = vpns[i];
                Debug.Assert(_frames.IsPageLocked(f), "reclaim holds the page lock");
                Debug.Assert(i == 0 || vpns[i - 1] <= vpn, "the batch is sorted by page (a stale owner may repeat one)");
                var pte = _disposed ? Pte.None : _pt.Get(vpn);
                ReclaimUnmap r;
                if (!pte.IsPresent || pte.Frame != f) r = ReclaimUnmap.Gone;
                else if (checkYoung && TestAndClearYoungLocked(f, vpn, flush: true)) r = ReclaimUnmap.Young;
                else r = ReclaimUnmap.Unmapped;   // a candidate: its run unmaps it
                results[i] = r;
                bool joins = r == ReclaimUnmap.Unmapped && runStart >= 0
                    && vpn - vpns[i - 1] <= MaxRunGap && vpn - vpns[runStart] < MaxRunPages;
                if (runStart >= 0 && !joins)
                {
                    UnmapRunLocked(frames, vpns, results, runStart, i, mayBlock);
                    runStart = -1;
                }
                if (r == ReclaimUnmap.Unmapped && runStart < 0) runStart = i;
            }
            if (runStart >= 0) UnmapRunLocked(frames, vpns, results, runStart, frames.Length, mayBlock);
        }
        finally { ExitLock(); }
    }

    /// <summary>Unmap the candidates [<paramref name="from"/>, <paramref name="to"/>) inside one invalidation of their span.</summary>
    private void UnmapRunLocked(ReadOnlySpan<uint> frames, ReadOnlySpan<ulong> vpns, Span<ReclaimUnmap> results, int from, int to, bool mayBlock)
    {
        AssertLocked();
        ulong first = vpns[from], end = vpns[to - 1] + 1;
        _host.Stats.Count(ref _host.Stats.ReclaimRuns);
        if (!InvalidateStartLocked(first, end, InvalidateEvent.Clear, InvalidateCause.Reclaim, mayBlock))
        {
            for (int j = from; j < to; j++) results[j] = ReclaimUnmap.WouldBlock;
            return;
        }
        try
        {
            for (int j = from; j < to; j++) results[j] = UnmapForReclaimLocked(frames[j], vpns[j]);
        }
        finally { InvalidateEndLocked(first, end, InvalidateEvent.Clear, mayBlock); }
    }

    private bool TestAndClearYoungLocked(uint f, ulong vpn, bool flush)
    {
        AssertLocked();
        ref ulong e = ref _pt.EntryOrNull(vpn);
        bool young = false;
        if (!Unsafe.IsNullRef(ref e) && (e & Pte.AccessedBit) != 0)
        {
            e &= ~Pte.AccessedBit;
            young = true;
        }
        young |= _frames.TestAndClear(f, FrameFlags.Referenced);
        if (!Notifiers.IsEmpty)
        {
            var a = Hva.FromPageNumber(vpn);
            young |= flush ? Notifiers.ClearFlushYoung(a, a.Add(Page.Size)) : Notifiers.ClearYoung(a, a.Add(Page.Size));
        }
        return young;
    }

    /// <summary>
    /// Inside an invalidation that covers <paramref name="vpn"/>: replace the
    /// present PTE of locked frame <paramref name="f"/> with a swap entry (a new
    /// slot, cached, if the page had none) or with nothing when the page is clean
    /// and has no swap copy (it was never written: it is zero). The frame's
    /// dirty state (PTE dirty bit, or dirty bits the secondary MMUs handed over
    /// during the invalidation start) moves to the frame. The mapping's
    /// reference is dropped; the caller's keeps the frame.
    /// </summary>
    internal ReclaimUnmap UnmapForReclaimLocked(uint f, ulong vpn)
    {
        AssertLocked();
        Debug.Assert(_frames.IsPageLocked(f), "reclaim holds the page lock");
        ref ulong e = ref _pt.EntryOrNull(vpn);
        if (Unsafe.IsNullRef(ref e) || (e & Pte.PresentBit) == 0 || new Pte(e).Frame != f) return ReclaimUnmap.Gone;
        bool cached = _frames.Has(f, FrameFlags.SwapCache);
        int expected = 1 + (cached ? 1 : 0) + 1;   // mapping + swap cache + caller
        if (_frames.RefCountOf(f) != expected)
        {
            _host.Stats.Count(ref _host.Stats.ReclaimBusy);
            return ReclaimUnmap.Busy;
        }
        bool dirty = (e & Pte.DirtyBit) != 0 || _frames.Has(f, FrameFlags.Dirty);
        var swap = _host.Swap;
        ulong next;
        if (cached)
        {
            uint slot = _frames.Meta(f).SwapSlot;
            swap.PteRefIncrement(slot);
            next = Pte.Swap(slot).Raw;
        }
        else if (!dirty)
        {
            next = 0;
        }
        else
        {
            uint slot = swap.Enabled ? swap.AllocateAndCache(f) : FrameMeta.NoSlot;
            if (slot == FrameMeta.NoSlot)
            {
                _host.Stats.Count(ref _host.Stats.SwapFull);
                return ReclaimUnmap.NoSwap;
            }
            next = Pte.Swap(slot).Raw;
        }
        if (dirty) _frames.Set(f, FrameFlags.Dirty);
        e = next;
        ref FrameMeta m = ref _frames.Meta(f);
        m.Owner = 0;
        m.MapCount = 0;
        _resident--;
        int left = Interlocked.Decrement(ref m.RefCount);
        Debug.Assert(left > 0, "the caller's reference keeps the frame");
        return ReclaimUnmap.Unmapped;
    }
}
