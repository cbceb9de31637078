using System.Diagnostics;
using System.Runtime.CompilerServices;
using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Mmu.Host;

// The fault path. Lock use, in order:
//   1. _lock: look the page up; a present page is done here (the fast path).
//   2. Nothing there: drop _lock, allocate a zeroed frame (may reclaim), retake
//      _lock, re-check, install.
//   3. A swap entry: drop _lock; find the slot's frame in the swap cache or
//      read it into a new frame that is locked and cached first (so racing
//      faults wait on its page lock instead of reading twice); then take
//      _lock, re-check that the PTE still names the slot, install.

public sealed partial class HostAddressSpace
{
    /// <summary>
    /// Fault one page in for <paramref name="write"/> (or read) and return its
    /// frame with a reference that the caller gives back with
    /// <see cref="HostMemory.ReleasePage"/> (unused, clean or dirty). The frame
    /// stays allocated while the reference is held.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public HostFaultStatus GetUserPage(Hva address, bool write, out Hfn frame) => GetUserPage(address, write, out frame, out _);

    /// <summary><see cref="GetUserPage(Hva, bool, out Hfn)"/>, also saying how the fault was answered.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public HostFaultStatus GetUserPage(Hva address, bool write, out Hfn frame, out FaultKind kind)
    {
        var status = FaultIn(address.PageNumber, write, takeRef: true, out uint f, out kind);
        frame = new Hfn(f);
        return status;
    }

    /// <summary>
    /// Fault in <paramref name="count"/> pages from <paramref name="start"/> and
    /// return their frames with references (get_user_pages). On failure no
    /// reference is kept and the status says why.
    /// </summary>
    public HostFaultStatus GetUserPages(Hva start, int count, bool write, Span<Hfn> frames)
    {
        if (start.PageOffset != 0) throw new ArgumentOutOfRangeException(nameof(start), start, "address must be 4 KiB aligned");
        if (count < 0 || count > frames.Length) throw new ArgumentOutOfRangeException(nameof(count), count, "count must fit the output span");
        ulong vpn = start.PageNumber;
        for (int i = 0; i < count; i++)
        {
            var status = FaultIn(vpn + (ulong)i, write, takeRef: true, out uint f, out _);
            if (status != HostFaultStatus.Ok)
            {
                for (int j = 0; j < i; j++) _host.ReleasePage(frames[j], PageRelease.Unused);
                return status;
            }
            frames[i] = new Hfn(f);
        }
        return HostFaultStatus.Ok;
    }

    /// <summary>Handle a host fault (handle_mm_fault): make the page present, keeping no reference.</summary>
    public HostFaultStatus Fault(Hva address, bool write) => FaultIn(address.PageNumber, write, takeRef: false, out _, out _);

    /// <param name="kind">How the page was found: present, zero-filled here, or swapped in (from the swap cache or the file; also when a racing fault installed it while this one waited on its swap-in).</param>
    private HostFaultStatus FaultIn(ulong vpn, bool write, bool takeRef, out uint frame, out FaultKind kind)
    {
        uint spare = FrameMeta.NoFrame;
        kind = FaultKind.Present;
        try
        {
            while (true)
            {
                uint slot;
                bool writable;
                EnterLock();
                try
                {
                    if (_disposed) { frame = FrameMeta.NoFrame; return HostFaultStatus.BadAddress; }
                    var vma = FindVmaLocked(vpn);
                    if (vma is null) { frame = FrameMeta.NoFrame; return HostFaultStatus.BadAddress; }
                    var need = write ? HostProtection.Write : HostProtection.Read;
                    if ((vma.Protection & need) == 0) { frame = FrameMeta.NoFrame; return HostFaultStatus.Protection; }
                    writable = (vma.Protection & HostProtection.Write) != 0;
                    ref ulong e = ref _pt.EntryCreate(vpn);
                    ulong raw = e;
                    if ((raw & Pte.PresentBit) != 0)
                    {
                        ulong bits = Pte.AccessedBit | (write ? Pte.DirtyBit : 0);
                        if ((raw & bits) != bits) e = raw | bits;
                        frame = new Pte(raw).Frame;
                        if (takeRef) _frames.GetPage(frame);
                        return HostFaultStatus.Ok;
                    }
                    if (raw == 0)
                    {
                        if (spare != FrameMeta.NoFrame)
                        {
                            InstallLocked(ref e, vpn, spare, writable, write);
                            _host.Lru.Add(spare, active: true);
                            frame = spare;
                            spare = FrameMeta.NoFrame;
                            if (takeRef) _frames.GetPage(frame);
                            _host.Stats.Count(ref _host.Stats.ZeroFillFaults);
                            kind = FaultKind.ZeroFill;
                            return HostFaultStatus.Ok;
                        }
                        slot = FrameMeta.NoSlot;
                    }
                    else slot = new Pte(raw).SwapSlot;
                }
                finally { ExitLock(); }

                if (slot == FrameMeta.NoSlot)
                {
                    var st = _host.Allocator.Allocate(zero: true, out spare);
                    if (st != HostFaultStatus.Ok) { frame = FrameMeta.NoFrame; return st; }
                    continue;
                }
                var swapStatus = SwapIn(vpn, slot, write, out bool fromFile);
                if (kind != FaultKind.SwapIn) kind = fromFile ? FaultKind.SwapIn : FaultKind.SwapCacheHit;
                if (swapStatus != HostFaultStatus.Ok) { frame = FrameMeta.NoFrame; return swapStatus; }
                // Installed (or raced): walk again; the present case takes the reference.
            }
        }
        finally
        {
            if (spare != FrameMeta.NoFrame) _host.PutPage(spare);
        }
    }

    /// <summary>Make a frame (whose reference the caller hands over) the page's present mapping.</summary>
    private void InstallLocked(ref ulong e, ulong vpn, uint f, bool writable, bool write)
    {
        AssertLocked();
        ref FrameMeta m = ref _frames.Meta(f);
        Debug.Assert(m.MapCount == 0 && m.Owner == 0, "a frame being mapped is mapped nowhere");
        m.Owner = FrameMeta.MakeOwner(Id, vpn);
        m.MapCount = 1;
        e = Pte.Present(f, writable, accessed: true, dirty: write).Raw;
        _resident++;
    }

    /// <summary>
    /// Bring the page named by swap entry <paramref name="slot"/> back and map it.
    /// Ok also when a racing operation changed the PTE first: the caller walks again.
    /// Called with no lock held.
    /// </summary>
    private HostFaultStatus SwapIn(ulong vpn, uint slot, bool write, out bool fromFile)
    {
        HostLockDebug.AssertNoSpinLocksHeld();
        var swap = _host.Swap;
        fromFile = false;
        uint f = swap.LookupAndGet(slot);
        if (f != FrameMeta.NoFrame)
        {
            _frames.LockPage(f);
            if (!_frames.Has(f, FrameFlags.SwapCache) || _frames.Meta(f).SwapSlot != slot)
            {
                // Dropped from the cache (reclaimed, or its read failed) while we waited.
                _frames.UnlockPage(f);
                _host.PutPage(f);
                return HostFaultStatus.Ok;
            }
        }
        else
        {
            var st = _host.Allocator.Allocate(zero: false, out f);
            if (st != HostFaultStatus.Ok) return st;
            bool locked = _frames.TryLockPage(f);
            Debug.Assert(locked, "a new frame is unlocked");
            if (!swap.TryAddToCache(slot, f))
            {
                // Another fault cached the slot first, or the slot is gone: retry from the PTE.
                _frames.UnlockPage(f);
                _host.PutPage(f);
                return HostFaultStatus.Ok;
            }
            _host.Lru.AddIfAbsent(f, active: false);   // every cached frame is on the LRU or isolated
            var events = _host.Events;
            long readStarted = events is null ? 0 : Stopwatch.GetTimestamp();
            var rs = swap.Read(slot, f, out string? error);
            events?.SwapRead(slot, readStarted, Stopwatch.GetTimestamp());
            if (rs != HostFaultStatus.Ok)
            {
                // Nothing is mapped: drop the bad copy from the cache; the PTE keeps naming the slot.
                swap.RemoveFromCache(f);
                _frames.UnlockPage(f);
                _host.PutPage(f);
                if (rs == HostFaultStatus.SwapChecksumMismatch) _host.Stats.Error(ref _host.Stats.SwapChecksumErrors, error!);
                else _host.Stats.Error(ref _host.Stats.SwapReadErrors, error!);
                return rs;
            }
            fromFile = true;
        }

        // f is locked and cached, and we hold a reference that becomes the mapping's.
        bool installed = false;
        EnterLock();
        try
        {
            var vma = _disposed ? null : FindVmaLocked(vpn);
            ref ulong e = ref _pt.EntryOrNull(vpn);
            if (vma is not null && !Unsafe.IsNullRef(ref e) && e == Pte.Swap(slot).Raw)
            {
                InstallLocked(ref e, vpn, f, (vma.Protection & HostProtection.Write) != 0, write);
                swap.PteRefDecrement(slot);   // the cache keeps the slot
                if (write)
                {
                    // The swap copy is about to go stale: free it now rather than write it again later.
                    swap.RemoveFromCache(f);
                }
                installed = true;
            }
        }
        finally { ExitLock(); }

        _frames.UnlockPage(f);
        if (installed)
        {
            // Already listed (it was put on the LRU when it entered the swap cache) or isolated
            // by a reclaimer that will put it back; our reference is now the mapping's.
            _host.Stats.Count(ref fromFile ? ref _host.Stats.SwapInsFromFile : ref _host.Stats.SwapCacheHits);
        }
        else
        {
            _host.FreeIfOrphan(f);   // the PTE changed under us; the cached copy may be unreachable now
            _host.PutPage(f);
        }
        return HostFaultStatus.Ok;
    }
}
