using System.Diagnostics;
using System.Runtime.CompilerServices;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Host;

// Lock order: page lock -> _lock -> notifier callbacks -> LRU lock -> swap lock -> allocator lock.
// _lock guards the VMA list, the page table, the Owner/MapCount of every frame
// this space maps, and _resident. It is never held while waiting for a page
// lock, for swap I/O or for a frame allocation that may reclaim (LOCKING.md).

/// <summary>
/// A host address space (Linux's mm): anonymous private VMAs, a 4-level host
/// page table, and the reverse-map owner of every frame it maps. Guest RAM is
/// one mapping per memory slot. The MMU notifiers of the secondary MMUs that
/// mirror it hang off <see cref="Notifiers"/>.
/// </summary>
public sealed partial class HostAddressSpace : IDisposable
{
    private const ulong FirstMapVpn = 0x10_0000;     // Map() hands out addresses from 4 GiB up
    private readonly HostMemory _host;
    private readonly FramePool _frames;
    private readonly Lock _lock = new();
    private readonly List<Vma> _vmas = new();        // sorted by StartVpn, disjoint; guarded by _lock
    private Vma? _lastVma;                           // guarded by _lock
    private readonly HostPageTable _pt = new();      // guarded by _lock
    private ulong _mapHintVpn = FirstMapVpn;         // guarded by _lock
    private long _resident;                          // guarded by _lock (read lock-free for statistics)
    private bool _disposed;                          // guarded by _lock

    internal HostAddressSpace(HostMemory host, int id)
    {
        _host = host;
        _frames = host.Frames;
        Id = id;
    }

    public int Id { get; }
    public HostMemory Host => _host;

    /// <summary>The secondary MMUs that mirror this address space (issue: MMU notifiers).</summary>
    public MmuNotifierRegistry Notifiers { get; } = new();

    /// <summary>Tables of the host page table, every level: allocated only where a page was touched (sparse).</summary>
    public int PageTablePages
    {
        get
        {
            EnterLock();
            try { return _pt.Tables; }
            finally { ExitLock(); }
        }
    }

    /// <summary>Pages mapped by a present PTE.</summary>
    public long ResidentPages => Volatile.Read(ref _resident);

    // ---- the lock ------------------------------------------------------------

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void EnterLock()
    {
        HostLockDebug.AssertAtMostOneAddressSpaceLock();
        _lock.Enter();
        HostLockDebug.EnterAddressSpace();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ExitLock()
    {
        HostLockDebug.ExitAddressSpace();
        _lock.Exit();
    }

    [Conditional("DEBUG")]
    private void AssertLocked() => Debug.Assert(_lock.IsHeldByCurrentThread, "the address-space lock is held");

    // ---- VMAs ------------------------------------------------------------------

    /// <summary>Map <paramref name="bytes"/> of anonymous private memory at an address the space chooses.</summary>
    public Hva Map(ulong bytes, HostProtection protection)
    {
        ulong pages = CheckLength(bytes);
        EnterLock();
        try
        {
            ThrowIfDisposedLocked();
            ulong start = _mapHintVpn;
            foreach (var v in _vmas)
                if (v.EndVpn > start && v.StartVpn < start + pages + 1) start = v.EndVpn + 1;
            if (start + pages > HostPageTable.MaxVpn) throw new InvalidOperationException("host-virtual space exhausted");
            InsertVmaLocked(new Vma(start, start + pages, Normalize(protection)));
            _mapHintVpn = start + pages + 1;   // one guard page between mappings
            return Hva.FromPageNumber(start);
        }
        finally { ExitLock(); }
    }

    /// <summary>Map at a fixed, free address (MAP_FIXED_NOREPLACE).</summary>
    public void MapFixed(Hva start, ulong bytes, HostProtection protection)
    {
        var (s, e) = CheckRange(start, bytes);
        EnterLock();
        try
        {
            ThrowIfDisposedLocked();
            foreach (var v in _vmas)
                if (v.StartVpn < e && s < v.EndVpn)
                    throw new ArgumentException($"[{start}, {Hva.FromPageNumber(e)}) overlaps {v}");
            InsertVmaLocked(new Vma(s, e, Normalize(protection)));
        }
        finally { ExitLock(); }
    }

    /// <summary>The mappings now (a copy).</summary>
    public IReadOnlyList<(Hva Start, Hva End, HostProtection Protection)> Mappings()
    {
        EnterLock();
        try { return _vmas.Select(v => (v.Start, v.End, v.Protection)).ToList(); }
        finally { ExitLock(); }
    }

    private static HostProtection Normalize(HostProtection p) =>
        (p & HostProtection.Write) != 0 ? HostProtection.ReadWrite : p & HostProtection.ReadWrite;

    private void InsertVmaLocked(Vma vma)
    {
        AssertLocked();
        int i = 0;
        while (i < _vmas.Count && _vmas[i].StartVpn < vma.StartVpn) i++;
        _vmas.Insert(i, vma);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Vma? FindVmaLocked(ulong vpn)
    {
        var last = _lastVma;
        if (last is not null && last.Contains(vpn)) return last;
        return FindVmaSlowLocked(vpn);
    }

    private Vma? FindVmaSlowLocked(ulong vpn)
    {
        int lo = 0, hi = _vmas.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            var v = _vmas[mid];
            if (vpn < v.StartVpn) hi = mid - 1;
            else if (vpn >= v.EndVpn) lo = mid + 1;
            else { _lastVma = v; return v; }
        }
        return null;
    }

    /// <summary>True when every page of [s, e) is inside some VMA.</summary>
    private bool CoveredLocked(ulong s, ulong e)
    {
        ulong at = s;
        while (at < e)
        {
            var v = FindVmaLocked(at);
            if (v is null) return false;
            at = v.EndVpn;
        }
        return true;
    }

    /// <summary>Split VMAs so that s and e fall on VMA boundaries (inside [s, e) only).</summary>
    private void SplitAtLocked(ulong vpn)
    {
        var v = FindVmaLocked(vpn);
        if (v is null || v.StartVpn == vpn) return;
        var tail = new Vma(vpn, v.EndVpn, v.Protection);
        v.EndVpn = vpn;
        InsertVmaLocked(tail);
        _lastVma = null;
    }

    private static ulong CheckLength(ulong bytes)
    {
        if (bytes == 0 || (bytes & Page.OffsetMask) != 0)
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "length must be a positive multiple of 4 KiB");
        ulong pages = bytes >> Page.Shift;
        if (pages >= HostPageTable.MaxVpn) throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "length exceeds the 48-bit host-virtual space");
        return pages;
    }

    private static (ulong Start, ulong End) CheckRange(Hva start, ulong bytes)
    {
        if (start.PageOffset != 0) throw new ArgumentOutOfRangeException(nameof(start), start, "address must be 4 KiB aligned");
        ulong pages = CheckLength(bytes);
        ulong s = start.PageNumber;
        if (s >= HostPageTable.MaxVpn || pages > HostPageTable.MaxVpn - s)
            throw new ArgumentOutOfRangeException(nameof(start), $"[{start}, +{bytes}) leaves the 48-bit host-virtual space");
        return (s, s + pages);
    }

    private void ThrowIfDisposedLocked()
    {
        if (_disposed) throw new ObjectDisposedException(nameof(HostAddressSpace));
    }

    /// <summary>The host PTE of a page (diagnostics and tests).</summary>
    public Pte QueryPte(Hva address)
    {
        EnterLock();
        try { return _pt.Get(address.PageNumber); }
        finally { ExitLock(); }
    }
}
