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

    /// <summary>Reclaim one locked, referenced, mapped frame: second chance, then unmap through the invalidation path.</summary>
    internal ReclaimUnmap ReclaimOne(uint f, ulong vpn, bool checkYoung, bool mayBlock)
    {
        Debug.Assert(_frames.IsPageLocked(f), "reclaim holds the page lock");
        EnterLock();
        try
        {
            var pte = _disposed ? Pte.None : _pt.Get(vpn);
            if (!pte.IsPresent || pte.Frame != f) return ReclaimUnmap.Gone;
            if (checkYoung && TestAndClearYoungLocked(f, vpn, flush: true)) return ReclaimUnmap.Young;
            if (!InvalidateStartLocked(vpn, vpn + 1, InvalidateEvent.Clear, InvalidateCause.Reclaim, mayBlock)) return ReclaimUnmap.WouldBlock;
            try { return UnmapForReclaimLocked(f, vpn); }
            finally { InvalidateEndLocked(vpn, vpn + 1, InvalidateEvent.Clear, mayBlock); }
        }
        finally { ExitLock(); }
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
