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

    /// <summary>
    /// Most pages one reclaim or page-out invalidation lists: one notifier start and end,
    /// one zap pass and one shootdown per batch. Bounds how long a fault on a listed page
    /// waits and how long the MMU lock is held for the zaps. Where the size comes from:
    /// bench/RESULTS.md "Page-out with the guest running: batches of pages".
    /// </summary>
    internal const int MaxBatchPages = 64;

    /// <summary>
    /// Reclaim a batch of locked, referenced frames this space maps at the given pages
    /// (sorted by page, ascending): second chance for each, then the rest unmapped in
    /// batches of at most <see cref="MaxBatchPages"/> pages, near or scattered, one
    /// invalidation (one notifier start and end listing the batch's pages, one zap pass
    /// and one shootdown in each secondary MMU) per batch, all under one hold of the lock.
    /// Writes each page's outcome to <paramref name="results"/>.
    /// </summary>
    internal void ReclaimBatch(ReadOnlySpan<uint> frames, ReadOnlySpan<ulong> vpns, bool checkYoung, bool mayBlock, Span<ReclaimUnmap> results)
    {
        Debug.Assert(frames.Length == vpns.Length && results.Length >= frames.Length, "one page and one result per frame");
        Span<int> candidates = stackalloc int[MaxBatchPages];
        int n = 0;
        EnterLock();
        try
        {
            // A page of the batch that is not a candidate (young, gone) is not listed, so its
            // entries are not zapped. A busy frame is found only inside the invalidation
            // (UnmapForReclaimLocked): a subscriber may hold a page reference that its zap gives back.
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
                else r = ReclaimUnmap.Unmapped;   // a candidate: its batch unmaps it
                results[i] = r;
                if (r != ReclaimUnmap.Unmapped) continue;
                // Candidates have distinct pages: a repeated page maps only one of its frames.
                candidates[n++] = i;
                if (n == MaxBatchPages)
                {
                    UnmapBatchLocked(frames, vpns, results, candidates[..n], mayBlock);
                    n = 0;
                }
            }
            if (n > 0) UnmapBatchLocked(frames, vpns, results, candidates[..n], mayBlock);
        }
        finally { ExitLock(); }
    }

    /// <summary>The batch's page list for its invalidation: null when the pages are one contiguous run (the range says it all).</summary>
    private static ulong[]? BatchListOf(ReadOnlySpan<ulong> sortedVpns) =>
        sortedVpns[^1] - sortedVpns[0] + 1 == (ulong)sortedVpns.Length ? null : sortedVpns.ToArray();

    /// <summary>Unmap the candidates <paramref name="batch"/> (indexes, ascending by page) inside one invalidation that lists their pages.</summary>
    private void UnmapBatchLocked(ReadOnlySpan<uint> frames, ReadOnlySpan<ulong> vpns, Span<ReclaimUnmap> results, ReadOnlySpan<int> batch, bool mayBlock)
    {
        AssertLocked();
        Span<ulong> pages = stackalloc ulong[batch.Length];
        for (int j = 0; j < batch.Length; j++) pages[j] = vpns[batch[j]];
        ulong first = pages[0], end = pages[^1] + 1;
        var list = BatchListOf(pages);
        _host.Stats.Count(ref _host.Stats.ReclaimRuns);
        if (!InvalidateStartLocked(first, end, InvalidateEvent.Clear, InvalidateCause.Reclaim, mayBlock, list))
        {
            foreach (int j in batch) results[j] = ReclaimUnmap.WouldBlock;
            return;
        }
        try
        {
            foreach (int j in batch) results[j] = UnmapForReclaimLocked(frames[j], vpns[j]);
        }
        finally { InvalidateEndLocked(first, end, InvalidateEvent.Clear, mayBlock, list); }
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
