namespace ToyVmm.Mmu.Host;

public sealed partial class HostMemory
{
    /// <summary>
    /// Drop a swap-cached frame that no PTE can reach any more (its mapping and
    /// its slot's swap PTE are gone). The caller holds one reference and no lock.
    /// If the page lock is busy, whoever holds it (or later reclaim) drops it.
    /// </summary>
    internal void FreeIfOrphan(uint f)
    {
        if (!Frames.Has(f, FrameFlags.SwapCache) || !Frames.TryLockPage(f)) return;
        if (Frames.Has(f, FrameFlags.SwapCache) && Frames.Meta(f).MapCount == 0 && Swap.IsOrphan(f))
            Swap.TryRemoveFromCache(f, expectedRefs: 2);
        Frames.UnlockPage(f);
    }
}
