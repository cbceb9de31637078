using System.Diagnostics;

namespace ToyVmm.Mmu.Secondary.Shadow;

// The shadow MMU's part of the notifier callbacks: the core
// (SecondaryMmuCore.Notifier.cs) walks the slots of the range under the MMU
// lock and calls these per slot. They find a guest frame's entries through the
// reverse map (ShadowMmu.Rmap.cs); the walker's flush on return then shoots the
// holders down exactly as EPT's does, before the host frees any frame.
public sealed unsafe partial class ShadowMmu
{
    /// <summary>Ranges of fewer guest frames than this are zapped frame by frame (no list of keys).</summary>
    private const ulong SmallRange = 64;

    /// <summary>
    /// Zap every entry of guest frames [first, last] found through the reverse map
    /// (their holders are returned for the walker's flush); when the contents may
    /// change, also the shadow pages of guest tables in the range (every TLB flushes).
    /// </summary>
    private protected override ulong ZapRangeLocked(ulong firstGfn, ulong lastGfn, bool contentsChange)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "zapping needs the MMU lock");
        ulong holders = 0;
        if (lastGfn - firstGfn < SmallRange)
        {
            // The common one-page or few-page invalidation: probe each frame, allocate nothing.
            for (ulong gfn = firstGfn; ; gfn++)
            {
                holders |= ZapGfnLocked(gfn);
                if (gfn == lastGfn) break;
            }
        }
        else
            foreach (ulong gfn in _rmap.KeysIn(firstGfn, lastGfn)) holders |= ZapGfnLocked(gfn);
        if (contentsChange && _shadowed.Count != 0)
        {
            bool any = false;
            foreach (ulong gfn in KeysIn(_shadowed, firstGfn, lastGfn))
            {
                if (!_shadowed.TryGetValue(gfn, out var list)) continue;
                foreach (var page in list.ToArray()) ZapPageLocked(page);
                _shadowed.Remove(gfn);
                any = true;
            }
            if (any) FlushVcpusLocked(ulong.MaxValue, 0, ulong.MaxValue);
        }
        return holders;
    }

    /// <summary>
    /// Aging: read (and with <paramref name="clear"/>, clear) the accessed bits of every entry of
    /// each guest frame, found through the reverse map; the holders of young entries are returned.
    /// </summary>
    private protected override ulong AgeRange(ulong firstGfn, ulong lastGfn, bool clear, ref bool young)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "the reverse map needs the MMU lock");
        ulong holders = 0;
        foreach (ulong gfn in _rmap.KeysIn(firstGfn, lastGfn))
        {
            if (!_rmap.TryGet(gfn, out var r)) continue;
            if (r.Direct)
            {
                var e = _gfnTable.Lookup(gfn);
                if (clear ? _gfnTable.TestAndClearAccessed(gfn) : e.IsAccessed) { young = true; holders |= e.Vcpus | EptEntry.Read; }
            }
            foreach (var (page, index) in r)
            {
                ulong old = clear ? Interlocked.And(ref page.Leaf![index], ~EptEntry.Accessed) : Volatile.Read(ref page.Leaf![index]);
                if ((old & (EptEntry.Read | EptEntry.Accessed)) == (EptEntry.Read | EptEntry.Accessed))
                {
                    young = true;
                    holders |= (old & EptEntry.VcpuMask) | EptEntry.Read;
                }
            }
        }
        return holders;
    }

    /// <summary>test_young takes the lock too: the reverse map is not safe to read without it.</summary>
    private protected override bool AgesLockless => false;
}
