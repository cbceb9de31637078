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
    private const int PageOutChunk = 64;

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
        var batch = new List<uint>(PageOutChunk);
        for (ulong cs = s; cs < e; cs += PageOutChunk)
        {
            ulong ce = Math.Min(e, cs + PageOutChunk);
            total += PageOutChunkOnce(cs, ce, batch, start, bytes);
        }
        return total;
    }

    private PageOutResult PageOutChunkOnce(ulong s, ulong e, List<uint> batch, Hva start, ulong bytes)
    {
        long skipped = 0;
        long started = Stopwatch.GetTimestamp();
        batch.Clear();
        EnterLock();
        try
        {
            if (_disposed || !CoveredLocked(s, e))
                throw new ArgumentOutOfRangeException(nameof(start), $"[{start}, +0x{bytes:x}) is not wholly mapped");
            ulong first = e, last = s;
            for (ulong vpn = s; _pt.NextUsed(ref vpn, e); vpn++)
            {
                var pte = _pt.Get(vpn);
                if (!pte.IsPresent) continue;
                if (!_frames.TryLockPage(pte.Frame)) { skipped++; continue; }
                _frames.GetPage(pte.Frame);
                batch.Add(pte.Frame);
                first = Math.Min(first, vpn); last = vpn;
            }
            if (batch.Count > 0)
            {
                // Blocking start: PageOut is asked for by a user and may wait for the subscribers.
                InvalidateStartLocked(first, last + 1, InvalidateEvent.Clear, InvalidateCause.PageOut, mayBlock: true);
                foreach (uint f in batch)
                {
                    ulong vpn = FrameMeta.OwnerVpn(_frames.Meta(f).Owner);
                    UnmapForReclaimLocked(f, vpn);   // what it could not unmap FinishBatch counts as kept
                }
                InvalidateEndLocked(first, last + 1, InvalidateEvent.Clear, mayBlock: true);
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
