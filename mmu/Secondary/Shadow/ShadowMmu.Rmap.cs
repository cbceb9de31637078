using System.Diagnostics;

namespace ToyVmm.Mmu.Secondary.Shadow;

// The reverse map (KVM's rmap, ShadowRmap.cs: one word per guest frame, a spill
// list for frames with more than one leaf): for each guest frame, every shadow
// leaf entry derived from it and its direct-role entry. Host invalidation, aging and
// write-protection find a frame's entries here instead of walking every shadow
// page. Everything here runs under _mmuLock.
//
// The checker sees one mapping per guest frame, as EPT has one entry: an
// install when the frame's first entry appears (or its host frame changes,
// which only broken-2008 allows), a zap when its last entry goes.
public sealed unsafe partial class ShadowMmu
{
    private readonly ShadowRmap _rmap = new();   // guarded by _mmuLock

    /// <summary>The host frame the entries of a guest frame map (read from the direct entry or a present leaf).</summary>
    private Hfn FrameOfLocked(ulong gfn, in ShadowRmap.Head head)
    {
        if (head.Direct)
        {
            var e = _gfnTable.Lookup(gfn);
            if (e.IsPresent) return e.Frame;
        }
        foreach (var (page, index) in head)
        {
            ulong raw = Volatile.Read(ref page.Leaf![index]);
            if ((raw & EptEntry.Read) != 0) return new EptEntry(raw).Frame;
        }
        return default;
    }

    /// <summary>A new entry maps <paramref name="gfn"/> to <paramref name="frame"/>: a leaf (<paramref name="page"/>, <paramref name="index"/>) or, with a null page, the direct entry. Call before the entry is written.</summary>
    private void NoteMappedLocked(ulong gfn, Hfn frame, ShadowPage? page, int index)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "the reverse map needs the MMU lock");
        if (!_rmap.TryGet(gfn, out var head) || head.Count == 0 || FrameOfLocked(gfn, head) != frame)
        {
            var gpa = Gpa.FromPageNumber(gfn);
            var slot = _slots.Find(gpa);
            if (slot is not null) Checker?.OnInstall(_host, gpa, slot.ToHva(gpa), frame);
        }
        if (page is null) _rmap.AddDirect(gfn);
        else _rmap.AddLeaf(gfn, page, index);
    }

    /// <summary>An entry of <paramref name="gfn"/> is gone; the last one tells the checker.</summary>
    private void NoteUnmappedLocked(ulong gfn, ShadowPage? page, int index, Hfn frame, ulong holders)
    {
        if (page is null) _rmap.RemoveDirect(gfn);
        else _rmap.RemoveLeaf(gfn, page, index);
        if (_rmap.TryGet(gfn, out _)) return;
        Checker?.OnZap(_host, new ZappedEntry(Gpa.FromPageNumber(gfn), frame, holders));
    }

    /// <summary>Clear a leaf entry (its dirty bit goes to the host page) and drop it from the reverse map. Returns its holders, plus Read when it was present.</summary>
    private ulong ZapLeafLocked(ShadowPage page, int index)
    {
        ulong old = Interlocked.Exchange(ref page.Leaf![index], 0);
        if ((old & EptEntry.Read) == 0) return 0;
        page.Used--;
        var e = new EptEntry(old);
        if (e.IsDirty) _host.SetPageDirty(e.Frame);
        NoteUnmappedLocked(page.LeafGfn![index], page, index, e.Frame, e.Vcpus);
        DropMappingLocked(e.Frame);   // a pin, if the protocol keeps one, goes back
        return e.Vcpus | EptEntry.Read;
    }

    /// <summary>
    /// Zap every entry of guest frame <paramref name="gfn"/>: the direct one and every
    /// leaf in the reverse map. Returns their holders (plus Read when anything was
    /// zapped); the caller flushes them before the host may free the frame.
    /// </summary>
    private ulong ZapGfnLocked(ulong gfn)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "zapping needs the MMU lock");
        if (!_rmap.Remove(gfn, out var head)) return 0;
        ulong holders = 0;
        Hfn frame = default;
        if (head.Direct)
        {
            var old = _gfnTable.ZapLocked(gfn);
            if (old.IsPresent)
            {
                if (old.IsDirty) _host.SetPageDirty(old.Frame);
                holders |= old.Vcpus | EptEntry.Read;
                frame = old.Frame;
                DropMappingLocked(old.Frame);
            }
        }
        foreach (var (page, index) in head)
        {
            ulong old = Interlocked.Exchange(ref page.Leaf![index], 0);
            if ((old & EptEntry.Read) == 0) continue;
            page.Used--;
            var e = new EptEntry(old);
            if (e.IsDirty) _host.SetPageDirty(e.Frame);
            holders |= e.Vcpus | EptEntry.Read;
            frame = e.Frame;
            DropMappingLocked(e.Frame);
        }
        Checker?.OnZap(_host, new ZappedEntry(Gpa.FromPageNumber(gfn), frame, holders));
        return holders;
    }

    /// <summary>The keys of <paramref name="map"/> in [first, last], cheapest way round (probe each frame of a small range, scan the map for a large one).</summary>
    private static List<ulong> KeysIn<TValue>(Dictionary<ulong, TValue> map, ulong first, ulong last)
    {
        var keys = new List<ulong>();
        if (map.Count == 0 || first > last) return keys;
        if (last - first < (ulong)map.Count)
        {
            for (ulong g = first; ; g++)
            {
                if (map.ContainsKey(g)) keys.Add(g);
                if (g == last) break;
            }
        }
        else
        {
            foreach (var g in map.Keys)
                if (g >= first && g <= last) keys.Add(g);
        }
        return keys;
    }

    /// <summary>For tests: what the entries of <paramref name="gpa"/>'s guest frame map it to (the frame; dirty if any entry is), or false.</summary>
    public bool TryLookup(Gpa gpa, out Hfn frame, out bool dirty)
    {
        lock (_mmuLock)
        {
            frame = default;
            dirty = false;
            ulong gfn = gpa.PageNumber;
            if (!_rmap.TryGet(gfn, out var head) || head.Count == 0) return false;
            frame = FrameOfLocked(gfn, head);
            if (head.Direct) dirty |= _gfnTable.Lookup(gfn).IsDirty;
            foreach (var (page, index) in head) dirty |= (Volatile.Read(ref page.Leaf![index]) & EptEntry.Dirty) != 0;
            return true;
        }
    }

    /// <summary>Leaf entries present now (every shadow page's, not the direct role's). Takes the MMU lock.</summary>
    public long LeafEntries()
    {
        lock (_mmuLock) return _rmap.Leaves;
    }
}
