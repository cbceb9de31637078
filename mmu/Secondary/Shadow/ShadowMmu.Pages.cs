using System.Diagnostics;

namespace ToyVmm.Mmu.Secondary.Shadow;

// Shadow pages: the hash keyed by (guest frame, role), the write-protected
// guest frames, links between pages, zapping, the root cache and the trapped
// guest page-table writes. Everything here runs under _mmuLock.
public sealed unsafe partial class ShadowMmu
{
    private readonly Dictionary<(ulong Gfn, ShadowRole Role), ShadowPage> _pages = new();   // guarded by _mmuLock
    private readonly Dictionary<ulong, List<ShadowPage>> _shadowed = new();                  // guarded by _mmuLock: guest table frame -> its (non-direct) shadow pages
    private readonly List<ShadowPage> _roots = [];                                           // guarded by _mmuLock
    private long _clock;                                                                     // guarded by _mmuLock
    private long _pagesLive, _rootCount;                                                     // written under _mmuLock, read racily

    /// <summary>Whether guest frame <paramref name="gfn"/> is a shadowed page table, so writes to it must trap.</summary>
    private bool IsWriteProtectedLocked(ulong gfn) => _shadowed.ContainsKey(gfn);

    /// <summary>The shadow page of (<paramref name="gfn"/>, <paramref name="role"/>); a new one for a guest table write-protects its frame first.</summary>
    private ShadowPage GetOrCreateLocked(ulong gfn, ShadowRole role)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "shadow pages need the MMU lock");
        if (_pages.TryGetValue((gfn, role), out var page)) { page.LastUsed = ++_clock; return page; }
        if (_pagesLive >= MaxPages) RecycleLocked();
        if (!role.Direct && !_shadowed.ContainsKey(gfn)) WriteProtectLocked(gfn);
        page = new ShadowPage(gfn, role);
        if (page.Leaf is not null) _rmap.Register(page);
        _pages.Add((gfn, role), page);
        if (!role.Direct)
        {
            if (!_shadowed.TryGetValue(gfn, out var list)) _shadowed[gfn] = list = [];
            list.Add(page);
        }
        page.LastUsed = ++_clock;
        _counts.PagesCreated++;
        Volatile.Write(ref _pagesLive, _pagesLive + 1);
        return page;
    }

    /// <summary>
    /// At the bound (<see cref="MaxPages"/>): zap the least recently used shadow pages
    /// that are not roots down to 7/8 of it, so the scan is paid once per eighth of the
    /// bound (KVM's make_mmu_pages_available, which zaps the oldest pages). "Used" is
    /// found or built by a fill; roots are bounded by the root cache and never taken here,
    /// so no vCPU loses its current root. A zap here is any zap: the leaves leave the
    /// reverse map, a frame with no shadow page left stops trapping, orphaned children
    /// go too, and every vCPU flushes its TLB. A page of the fill in progress that goes
    /// is caught by its validity check, and the fill walks again.
    /// </summary>
    private void RecycleLocked()
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "recycling shadow pages needs the MMU lock");
        long target = MaxPages - Math.Max(1, MaxPages / 8), before = _pagesLive;
        foreach (var victim in _pages.Values.Where(p => !p.IsRoot).OrderBy(p => p.LastUsed).ToArray())
        {
            if (_pagesLive <= target) break;
            ZapPageLocked(victim);   // nothing if an earlier victim's zap took it as an orphan
        }
        _counts.PagesRecycled += before - _pagesLive;
        FlushVcpusLocked(ulong.MaxValue, 0, ulong.MaxValue);
    }

    /// <summary>
    /// Guest frame <paramref name="gfn"/> becomes a shadowed page table: no entry may
    /// let a vCPU write it without a trap. Leaf entries lose their write bit, the
    /// direct entry goes (it comes back read-only), and every vCPU flushes the frame:
    /// a vCPU in the middle of a write to it finishes that write before it
    /// acknowledges, so the walk re-check that follows sees it.
    /// </summary>
    private void WriteProtectLocked(ulong gfn)
    {
        _counts.WriteProtects++;
        // Mark it first: a fill racing from the hit path finds no writable entry to re-use.
        _shadowed[gfn] = [];
        if (_rmap.TryGet(gfn, out var r))
        {
            if (r.Direct)
            {
                var old = _gfnTable.ZapLocked(gfn);
                if (old.IsDirty) _host.SetPageDirty(old.Frame);
                NoteUnmappedLocked(gfn, null, 0, old.Frame, old.Vcpus);
                if (old.IsPresent) DropMappingLocked(old.Frame);
            }
            foreach (var (page, index) in r)
                Interlocked.And(ref page.Leaf![index], ~EptEntry.Write);
        }
        FlushVcpusLocked(ulong.MaxValue, gfn, gfn);
    }

    /// <summary>Link <paramref name="parent"/>'s entry <paramref name="index"/> to <paramref name="child"/>; true when an older link had to go (the caller flushes every TLB).</summary>
    private bool LinkLocked(ShadowPage parent, int index, ShadowPage child)
    {
        var current = parent.Children![index];
        if (current == child) return false;
        bool replaced = current is not null && UnlinkLocked(parent, index);
        child.Parents.Add((parent, index));
        Volatile.Write(ref parent.Children[index], child);
        parent.Used++;
        return replaced;
    }

    /// <summary>Drop <paramref name="parent"/>'s link <paramref name="index"/>; a child left with no parent (and not a root) is zapped. True when there was a link.</summary>
    private bool UnlinkLocked(ShadowPage parent, int index)
    {
        var child = parent.Children![index];
        if (child is null) return false;
        Volatile.Write(ref parent.Children[index], null);
        parent.Used--;
        child.Parents.Remove((parent, index));
        if (child.Parents.Count == 0 && !child.IsRoot) ZapPageLocked(child);
        return true;
    }

    /// <summary>
    /// Zap a shadow page: out of the hash, the write-protected index and the root
    /// cache, unlinked from its parents, its leaf entries zapped and its children
    /// unlinked (orphans zapped in turn). The caller flushes every vCPU's whole TLB:
    /// which guest frames were reached through the page is not known.
    /// </summary>
    private void ZapPageLocked(ShadowPage page)
    {
        if (!page.Valid) return;
        page.Valid = false;
        _pages.Remove((page.Gfn, page.Role));
        _counts.PagesZapped++;
        Volatile.Write(ref _pagesLive, _pagesLive - 1);
        if (!page.Role.Direct && _shadowed.TryGetValue(page.Gfn, out var list))
        {
            list.Remove(page);
            if (list.Count == 0) _shadowed.Remove(page.Gfn);   // writes to the frame no longer trap
        }
        if (page.IsRoot)
        {
            page.IsRoot = false;
            _roots.Remove(page);
            Volatile.Write(ref _rootCount, _rootCount - 1);
        }
        foreach (var (parent, index) in page.Parents)
            if (parent.Children![index] == page) { Volatile.Write(ref parent.Children[index], null); parent.Used--; }
        page.Parents.Clear();
        if (page.Leaf is not null)
        {
            for (int i = 0; i < ShadowPage.Entries && page.Used > 0; i++) ZapLeafLocked(page, i);
            _rmap.Unregister(page);   // no leaf of it is in the reverse map any more
        }
        else
        {
            for (int i = 0; i < ShadowPage.Entries && page.Used > 0; i++)
                if (page.Children![i] is not null) UnlinkLocked(page, i);
        }
    }

    /// <summary>Zap every shadow page of guest table <paramref name="gfn"/> and flush every TLB (a guest-physical write to it, or its contents replaced). True if there was one.</summary>
    private bool UnshadowLocked(ulong gfn)
    {
        if (!_shadowed.TryGetValue(gfn, out var list)) return false;
        foreach (var page in list.ToArray()) ZapPageLocked(page);
        _shadowed.Remove(gfn);
        FlushVcpusLocked(ulong.MaxValue, 0, ulong.MaxValue);
        return true;
    }

    /// <summary>The root of <paramref name="context"/>: from the root cache, or built (evicting the least recently used root beyond <see cref="MaxRoots"/>).</summary>
    private ShadowPage RootLocked(ShadowContext context)
    {
        var role = ShadowRole.Root(context.Nxe);
        ulong gfn = context.Cr3 >> 12;
        if (_pages.TryGetValue((gfn, role), out var root) && root.IsRoot)
        {
            if (context.Root != root) _counts.RootHits++;
        }
        else
        {
            root = GetOrCreateLocked(gfn, role);
            root.IsRoot = true;
            _roots.Add(root);
            Volatile.Write(ref _rootCount, _rootCount + 1);
            _counts.RootMisses++;
        }
        root.LastUsed = ++_clock;
        context.Root = root;
        if (_roots.Count > MaxRoots)
        {
            var victim = _roots.Where(r => r != root).MinBy(r => r.LastUsed)!;
            ZapPageLocked(victim);
            FlushVcpusLocked(ulong.MaxValue, 0, ulong.MaxValue);
        }
        return root;
    }

    public void PageTableWritten(VcpuLink vcpu, ulong gpa, int bytes)
    {
        ulong gfn = gpa >> 12;
        int first = (int)((gpa & 0xFFF) >> 3), last = (int)(Math.Min((gpa & 0xFFF) + (ulong)bytes, 4096) - 1) >> 3;
        bool wasInGuest = vcpu.Mode == VcpuMode.InGuest;
        if (wasInGuest) vcpu.ExitGuest();          // the MMU lock may block, and the zap may wait for other vCPUs
        try
        {
            lock (_mmuLock)
            {
                _counts.WriteProtectTraps++;
                if (!_shadowed.TryGetValue(gfn, out var list)) return;
                ulong holders = 0, lo = ulong.MaxValue, hi = 0;
                bool links = false;
                foreach (var page in list.ToArray())
                {
                    if (!page.Valid) continue;
                    for (int i = first; i <= last; i++)
                    {
                        if (page.Leaf is not null)
                        {
                            ulong g = page.LeafGfn![i];
                            ulong h = ZapLeafLocked(page, i);
                            if (h == 0) continue;
                            _counts.TrapZaps++;
                            holders |= h;
                            lo = Math.Min(lo, g); hi = Math.Max(hi, g);
                        }
                        else if (UnlinkLocked(page, i))
                        {
                            _counts.TrapZaps++;
                            links = true;
                        }
                    }
                }
                if (links) FlushVcpusLocked(ulong.MaxValue, 0, ulong.MaxValue);
                else if (holders != 0) FlushVcpusLocked(holders, lo, hi);
            }
        }
        finally
        {
            if (wasInGuest) vcpu.EnterGuest();
        }
    }
}
