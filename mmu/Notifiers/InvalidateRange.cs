using ToyVmm.Mmu.Metrics;

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
/// The host operation that asked (<see cref="Cause"/>) and when its invalidation
/// started (<see cref="StartTicks"/>, the same in the start and the end callback)
/// are for the measurements.
/// </summary>
public readonly record struct InvalidateRange(Hva Start, Hva End, InvalidateEvent Event, bool MayBlock)
{
    private readonly InvalidateCause? _cause;

    /// <summary>Which host operation asked; unless set, the one <see cref="Event"/> implies.</summary>
    public InvalidateCause Cause
    {
        get => _cause ?? Event switch
        {
            InvalidateEvent.Unmap => InvalidateCause.Unmap,
            InvalidateEvent.Protection => InvalidateCause.Protect,
            InvalidateEvent.Release => InvalidateCause.Teardown,
            _ => InvalidateCause.Reclaim,
        };
        init => _cause = value;
    }

    /// <summary>
    /// When the invalidation started (<see cref="System.Diagnostics.Stopwatch"/> ticks), stamped once by the
    /// host at the start and carried to the end; 0 when the caller did not stamp it.
    /// </summary>
    public long StartTicks { get; init; }

    public ulong Pages => (End.Value - Start.Value) >> Page.Shift;
    public override string ToString() => $"{Event} [{Start}, {End}){(MayBlock ? "" : " nonblocking")}";
}
