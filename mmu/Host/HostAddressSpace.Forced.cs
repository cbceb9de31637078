using System.Diagnostics;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Host;

/// <summary>What a forced page-out did, page by page.</summary>
public readonly record struct PageOutResult(long Written, long Dropped, long Skipped, long Failed)
{
    /// <summary>Pages that left memory (written to swap, or dropped because their swap copy or zero was current).</summary>
    public long PagedOut => Written + Dropped;
    public static PageOutResult operator +(PageOutResult a, PageOutResult b) =>
        new(a.Written + b.Written, a.Dropped + b.Dropped, a.Skipped + b.Skipped, a.Failed + b.Failed);
}

// Forced operations: each one runs through the invalidation path
// (HostAddressSpace.Invalidate.cs) and frees frames only after it.

public sealed partial class HostAddressSpace
{
    /// <summary>
    /// Most pages of a PageOut range one batch looks through under one hold of the lock
    /// (128 MiB; absent page-table leaves are skipped whole): a sparse range still fills
    /// its batches, yet the scan under the lock stays bounded.
    /// </summary>
    private const ulong PageOutScanPages = MaxBatchPages * 512;

    /// <summary>
    /// Drop the range's pages (MADV_DONTNEED): present pages are freed, swap
    /// copies forgotten; the range reads as zero afterwards. The range must be mapped.
    /// Returns pages that had contents.
    /// </summary>
    public long DontNeed(Hva start, ulong bytes)
    {
        var (s, e) = CheckRange(start, bytes);
        var zapped = new List<uint>();
        bool mayBlock = true;
        long n;
        if (!EnterAndStart(s, e, InvalidateEvent.Clear, InvalidateCause.Discard, ref mayBlock, canFallBack: true)) return 0;
        try
        {
            if (_disposed || !CoveredLocked(s, e))
            {
                InvalidateEndLocked(s, e, InvalidateEvent.Clear, mayBlock);
                throw new ArgumentOutOfRangeException(nameof(start), $"[{start}, +0x{bytes:x}) is not wholly mapped");
            }
            n = ZapRangeLocked(s, e, zapped);
            InvalidateEndLocked(s, e, InvalidateEvent.Clear, mayBlock);
        }
        finally { ExitLock(); }
        ReleaseZapped(zapped);
        return n;
    }

    /// <summary>Unmap the range (munmap): its pages are dropped and its VMAs removed or cut. Unmapped holes are fine.</summary>
    public long Unmap(Hva start, ulong bytes)
    {
        var (s, e) = CheckRange(start, bytes);
        var zapped = new List<uint>();
        bool mayBlock = true;
        long n;
        if (!EnterAndStart(s, e, InvalidateEvent.Unmap, InvalidateCause.Unmap, ref mayBlock, canFallBack: true)) return 0;
        try
        {
            n = ZapRangeLocked(s, e, zapped);
            SplitAtLocked(s);
            SplitAtLocked(e);
            _vmas.RemoveAll(v => v.StartVpn >= s && v.EndVpn <= e);
            _lastVma = null;
            InvalidateEndLocked(s, e, InvalidateEvent.Unmap, mayBlock);
        }
        finally { ExitLock(); }
        ReleaseZapped(zapped);
        return n;
    }

    /// <summary>Change the protection of a wholly mapped range (mprotect). Returns present pages whose PTE changed.</summary>
    public long Protect(Hva start, ulong bytes, HostProtection protection)
    {
        var (s, e) = CheckRange(start, bytes);
        protection = Normalize(protection);
        bool mayBlock = true;
        long n = 0;
        if (!EnterAndStart(s, e, InvalidateEvent.Protection, InvalidateCause.Protect, ref mayBlock, canFallBack: true)) return 0;
        try
        {
            if (_disposed || !CoveredLocked(s, e))
            {
                InvalidateEndLocked(s, e, InvalidateEvent.Protection, mayBlock);
                throw new ArgumentOutOfRangeException(nameof(start), $"[{start}, +0x{bytes:x}) is not wholly mapped");
            }
            SplitAtLocked(s);
            SplitAtLocked(e);
            foreach (var v in _vmas)
                if (v.StartVpn >= s && v.EndVpn <= e) v.Protection = protection;
            bool writable = (protection & HostProtection.Write) != 0;
            for (ulong vpn = s; _pt.NextUsed(ref vpn, e); vpn++)
            {
                ref ulong entry = ref _pt.EntryOrNull(vpn);
                if ((entry & Pte.PresentBit) == 0) continue;
                ulong updated = writable ? entry | Pte.WritableBit : entry & ~Pte.WritableBit;
                if (updated != entry) { entry = updated; n++; }
            }
            InvalidateEndLocked(s, e, InvalidateEvent.Protection, mayBlock);
        }
        finally { ExitLock(); }
        return n;
    }

    /// <summary>
    /// Write the range's resident pages to swap and free them now (MADV_PAGEOUT),
    /// ignoring their accessed bits. Contents are kept: the next touch swaps them
    /// back. Pages that are busy (a short-lived reference is held, or another
    /// operation holds their page lock) are skipped; write failures leave the
    /// page resident and are counted in <see cref="PageOutResult.Failed"/>.
    /// The range must be mapped.
    /// </summary>
    public PageOutResult PageOut(Hva start, ulong bytes)
    {
        var (s, e) = CheckRange(start, bytes);
        var total = new PageOutResult();
        var batch = new List<uint>(MaxBatchPages);
        var vpns = new List<ulong>(MaxBatchPages);
        // Each batch takes up to MaxBatchPages resident pages from where the last one stopped.
        for (ulong cs = s; cs < e;)
            total += PageOutBatchOnce(ref cs, e, [], batch, vpns, start, bytes);
        return total;
    }

    /// <summary>
    /// <see cref="PageOut(Hva, ulong)"/> of scattered pages (process_madvise with a vector
    /// of one-page ranges): each page's resident frame is written to swap and freed, in
    /// batches of at most <see cref="MaxBatchPages"/> pages with one invalidation each,
    /// whatever the distance between them. Every page must be mapped; repeats count once.
    /// </summary>
    public PageOutResult PageOutPages(ReadOnlySpan<Hva> pages)
    {
        var sorted = new ulong[pages.Length];
        for (int i = 0; i < pages.Length; i++)
        {
            CheckRange(pages[i].PageBase, Page.Size);
            sorted[i] = pages[i].PageNumber;
        }
        Array.Sort(sorted);
        int distinct = 0;
        for (int i = 0; i < sorted.Length; i++)
            if (distinct == 0 || sorted[i] != sorted[distinct - 1]) sorted[distinct++] = sorted[i];
        var total = new PageOutResult();
        var batch = new List<uint>(MaxBatchPages);
        var vpns = new List<ulong>(MaxBatchPages);
        for (int i = 0; i < distinct; i += MaxBatchPages)
        {
            var listed = sorted.AsSpan(i, Math.Min(MaxBatchPages, distinct - i));
            ulong from = listed[0];
            total += PageOutBatchOnce(ref from, listed[^1] + 1, listed, batch, vpns, Hva.FromPageNumber(listed[0]), Page.Size);
        }
        return total;
    }

    /// <summary>
    /// One page-out batch: up to <see cref="MaxBatchPages"/> resident pages of [s, e) from
    /// <paramref name="s"/> on, looking through at most <see cref="PageOutScanPages"/> pages
    /// (or, when <paramref name="listed"/> is not empty, those pages only), are page-locked,
    /// unmapped inside one invalidation that lists them, then written and freed together.
    /// Moves <paramref name="s"/> past the pages it looked at.
    /// </summary>
    private PageOutResult PageOutBatchOnce(ref ulong s, ulong e, ReadOnlySpan<ulong> listed, List<uint> batch, List<ulong> vpns, Hva start, ulong bytes)
    {
        long skipped = 0;
        long started = Stopwatch.GetTimestamp();
        batch.Clear();
        vpns.Clear();
        EnterLock();
        try
        {
            if (_disposed) throw new ArgumentOutOfRangeException(nameof(start), $"[{start}, +0x{bytes:x}) is not wholly mapped");
            if (listed.IsEmpty)
            {
                ulong window = Math.Min(e, s + PageOutScanPages);
                if (!CoveredLocked(s, window)) throw new ArgumentOutOfRangeException(nameof(start), $"[{start}, +0x{bytes:x}) is not wholly mapped");
                ulong vpn = s;
                for (; batch.Count < MaxBatchPages && _pt.NextUsed(ref vpn, window); vpn++) skipped += TakeForPageOutLocked(vpn, batch, vpns);
                s = batch.Count == MaxBatchPages ? vpn : window;
            }
            else
            {
                foreach (ulong vpn in listed)
                {
                    if (!CoveredLocked(vpn, vpn + 1))
                        throw new ArgumentOutOfRangeException(nameof(start), $"page {Hva.FromPageNumber(vpn)} is not mapped");
                    skipped += TakeForPageOutLocked(vpn, batch, vpns);
                }
                s = e;
            }
            if (batch.Count > 0)
            {
                var pages = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(vpns);
                ulong first = pages[0], end = pages[^1] + 1;
                var list = BatchListOf(pages);
                // Blocking start: PageOut is asked for by a user and may wait for the subscribers.
                InvalidateStartLocked(first, end, InvalidateEvent.Clear, InvalidateCause.PageOut, mayBlock: true, list);
                for (int i = 0; i < batch.Count; i++)
                    UnmapForReclaimLocked(batch[i], vpns[i]);   // what it could not unmap FinishBatch counts as kept
                InvalidateEndLocked(first, end, InvalidateEvent.Clear, mayBlock: true, list);
            }
        }
        catch
        {
            foreach (uint f in batch) { _frames.UnlockPage(f); _host.PutPage(f); }
            throw;
        }
        finally { ExitLock(); }
        if (batch.Count == 0) return new PageOutResult(0, 0, skipped, 0);
        var outcome = _host.Reclaim.FinishBatch(batch, isolated: false);
        _host.Events?.PageOutBatch(outcome.Written + outcome.Dropped, started, Stopwatch.GetTimestamp());
        return new PageOutResult(outcome.Written, outcome.Dropped, skipped + outcome.Kept, outcome.Failed);
    }

    /// <summary>A resident page joins the page-out batch (page-locked, with a reference); returns 1 when it is busy and skipped.</summary>
    private int TakeForPageOutLocked(ulong vpn, List<uint> batch, List<ulong> vpns)
    {
        AssertLocked();
        var pte = _pt.Get(vpn);
        if (!pte.IsPresent) return 0;
        if (!_frames.TryLockPage(pte.Frame)) return 1;
        _frames.GetPage(pte.Frame);
        batch.Add(pte.Frame);
        vpns.Add(vpn);
        return 0;
    }

    /// <summary>
    /// Tear the address space down (exit_mmap): notifier subscribers are
    /// released first, then every page and swap copy is dropped.
    /// </summary>
    public void Dispose()
    {
        var zapped = new List<uint>();
        EnterLock();
        try
        {
            if (_disposed) return;
            _disposed = true;
            InvalidateStartLocked(0, HostPageTable.MaxVpn, InvalidateEvent.Release, InvalidateCause.Teardown, mayBlock: true);
            foreach (var v in _vmas) ZapRangeLocked(v.StartVpn, v.EndVpn, zapped);
            _vmas.Clear();
            _lastVma = null;
            InvalidateEndLocked(0, HostPageTable.MaxVpn, InvalidateEvent.Release, mayBlock: true);
        }
        finally { ExitLock(); }
        ReleaseZapped(zapped);
        _host.RemoveAddressSpace(this);
    }
}
