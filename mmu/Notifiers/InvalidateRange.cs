namespace ToyVmm.Mmu.Notifiers;

/// <summary>Why a host operation is about to clear or change page-table entries.</summary>
public enum InvalidateEvent
{
    /// <summary>The range is unmapped (munmap, address-space teardown of a VMA).</summary>
    Unmap,
    /// <summary>PTEs are cleared but the mapping stays (reclaim, PageOut, DontNeed).</summary>
    Clear,
    /// <summary>Permissions change (mprotect, write-protect for copy-on-write).</summary>
    Protection,
    /// <summary>The whole address space is going away.</summary>
    Release,
    /// <summary>A page moves to another frame.</summary>
    Migrate,
}

/// <summary>
/// A host-virtual range about to be invalidated: [Start, End), its event kind,
/// and whether subscribers may block (sleep, take sleeping locks, wait for vCPUs).
/// </summary>
public readonly record struct InvalidateRange(Hva Start, Hva End, InvalidateEvent Event, bool MayBlock)
{
    public ulong Pages => (End.Value - Start.Value) >> Page.Shift;
    public override string ToString() => $"{Event} [{Start}, {End}){(MayBlock ? "" : " nonblocking")}";
}
