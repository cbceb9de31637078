namespace ToyVmm.Mmu.Metrics;

/// <summary>How the host answered a secondary fault (the report's <c>faults.&lt;kind&gt;</c>).</summary>
public enum FaultKind
{
    /// <summary>The host page was present: only the secondary entry was missing.</summary>
    Present,
    /// <summary>The host allocated and zeroed a frame (first touch, or after DISCARD).</summary>
    ZeroFill,
    /// <summary>The page was swapped out but its frame was still in the swap cache.</summary>
    SwapCacheHit,
    /// <summary>The page was read back from the swap file.</summary>
    SwapIn,
}

/// <summary>
/// Why the host invalidated a range (the report's <c>invalidations.byEvent.&lt;event&gt;</c>).
/// Finer than <see cref="Notifiers.InvalidateEvent"/>, which says what happens to the
/// PTEs; this says which host operation asked.
/// </summary>
public enum InvalidateCause
{
    /// <summary>The reclaimer (background or direct) took pages off the LRU.</summary>
    Reclaim,
    /// <summary>A forced page-out: the PAGEOUT hypercall or the page-out driver.</summary>
    PageOut,
    /// <summary>DISCARD (madvise DONTNEED): the pages read as zero afterwards.</summary>
    Discard,
    /// <summary>munmap of a range.</summary>
    Unmap,
    /// <summary>mprotect or write-protection.</summary>
    Protect,
    /// <summary>The address space is torn down.</summary>
    Teardown,
}

/// <summary>Which step of a TLB shootdown completed a vCPU's flush (mmu/LOCKING.md "TLB shootdown").</summary>
public enum ShootdownStep
{
    /// <summary>The vCPU's filter showed it never held the range.</summary>
    NeverHeld,
    /// <summary>The vCPU acknowledged within the short spin.</summary>
    Acknowledged,
    /// <summary>Shot down from outside while the vCPU was at a quiet instruction.</summary>
    ShotDown,
    /// <summary>The invalidator waited for the vCPU's acknowledgement.</summary>
    Waited,
}
