using System.Diagnostics;

namespace ToyVmm.Mmu.Secondary.Shadow;

// The reverse map (KVM's rmap): for each guest frame, every shadow leaf entry
// derived from it and its direct-role entry. Host invalidation, aging and
// write-protection find a frame's entries here instead of walking every shadow
// page. Everything here runs under _mmuLock.
//
// The checker sees one mapping per guest frame, as EPT has one entry: an
// install when the frame's first entry appears (or its host frame changes,
// which only broken-2008 allows), a zap when its last entry goes.
public sealed unsafe partial class ShadowMmu
{
    /// <summary>The entries of one guest frame.</summary>
    private sealed class Rmap(Hfn frame)
    {
        public Hfn Frame = frame;
        public bool Direct;
        public readonly List<(ShadowPage Page, int Index)> Leaves = [];
        public int Count => Leaves.Count + (Direct ? 1 : 0);
    }

    private readonly Dictionary<ulong, Rmap> _rmap = new();   // guarded by _mmuLock

    /// <summary>A new entry maps <paramref name="gfn"/> to <paramref name="frame"/>: a leaf (<paramref name="page"/>, <paramref name="index"/>) or, with a null page, the direct entry.</summary>
    private void NoteMappedLocked(ulong gfn, Hfn frame, ShadowPage? page, int index)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "the reverse map needs the MMU lock");
        if (!_rmap.TryGetValue(gfn, out var r)) _rmap[gfn] = r = new Rmap(frame);
        if (r.Count == 0 || r.Frame != frame)
        {
            r.Frame = frame;
            var gpa = Gpa.FromPageNumber(gfn);
            var slot = _slots.Find(gpa);
            if (slot is not null) Checker?.OnInstall(_host, gpa, slot.ToHva(gpa), frame);
        }
        if (page is null) r.Direct = true;
        else r.Leaves.Add((page, index));
    }

    /// <summary>An entry of <paramref name="gfn"/> is gone; the last one tells the checker.</summary>
    private void NoteUnmappedLocked(ulong gfn, ShadowPage? page, int index, Hfn frame, ulong holders)
    {
        if (!_rmap.TryGetValue(gfn, out var r)) return;
        if (page is null) r.Direct = false;
        else r.Leaves.Remove((page, index));
        if (r.Count != 0) return;
        _rmap.Remove(gfn);
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
        if (!_rmap.Remove(gfn, out var r)) return 0;
        ulong holders = 0;
        var frame = r.Frame;
        if (r.Direct)
        {
            var old = _gfnTable.ZapLocked(gfn);
            if (old.IsPresent)
            {
                if (old.IsDirty) _host.SetPageDirty(old.Frame);
                holders |= old.Vcpus | EptEntry.Read;
                DropMappingLocked(old.Frame);
            }
        }
        foreach (var (page, index) in r.Leaves)
        {
            ulong old = Interlocked.Exchange(ref page.Leaf![index], 0);
            if ((old & EptEntry.Read) == 0) continue;
            page.Used--;
            var e = new EptEntry(old);
            if (e.IsDirty) _host.SetPageDirty(e.Frame);
            holders |= e.Vcpus | EptEntry.Read;
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
            if (!_rmap.TryGetValue(gpa.PageNumber, out var r) || r.Count == 0) return false;
            frame = r.Frame;
            if (r.Direct) dirty |= _gfnTable.Lookup(gpa.PageNumber).IsDirty;
            foreach (var (page, index) in r.Leaves) dirty |= (Volatile.Read(ref page.Leaf![index]) & EptEntry.Dirty) != 0;
            return true;
        }
    }

    /// <summary>Leaf entries present now (every shadow page's, not the direct role's). Takes the MMU lock.</summary>
    public long LeafEntries()
    {
        lock (_mmuLock) return _rmap.Values.Sum(r => (long)r.Leaves.Count);
    }
}
