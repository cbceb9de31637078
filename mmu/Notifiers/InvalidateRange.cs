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
/// A batch (<see cref="BatchPages"/>) names the pages of the range that change:
/// the rest of [Start, End) is left alone, and a subscriber may act on the listed
/// pages only (or, conservatively, on the whole range).
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

    /// <summary>
    /// A batch: the host page numbers that change, sorted ascending, distinct, each in
    /// [Start, End) (whose bounds are the first page and one past the last). Null: every
    /// page of the range. One start and one end cover the whole batch; between them no
    /// subscriber may establish a mapping of a listed page.
    /// </summary>
    public ulong[]? BatchPages { get; init; }

    /// <summary>Pages that change: the batch's, or the whole range's.</summary>
    public ulong Pages => BatchPages is { } batch ? (ulong)batch.Length : (End.Value - Start.Value) >> Page.Shift;

    /// <summary>Whether host page <paramref name="vpn"/> changes (listed in the batch, or inside the range).</summary>
    public bool Covers(ulong vpn) =>
        vpn >= Start.PageNumber && vpn < End.PageNumber && (BatchPages is not { } batch || Array.BinarySearch(batch, vpn) >= 0);

    /// <summary>
    /// The range clipped to [<paramref name="start"/>, <paramref name="end"/>), its batch cut to
    /// the pages inside; false when no changing page is inside.
    /// </summary>
    public bool TryClip(Hva start, Hva end, out InvalidateRange clipped)
    {
        ulong s = Math.Max(Start.Value, start.Value), e = Math.Min(End.Value, end.Value);
        clipped = this;
        if (s >= e) return false;
        if (BatchPages is not { } batch)
        {
            clipped = this with { Start = new Hva(s), End = new Hva(e) };
            return true;
        }
        ulong sp = s >> Page.Shift, ep = (e + Page.Size - 1) >> Page.Shift;
        int from = LowerBound(batch, sp), to = LowerBound(batch, ep);
        if (from >= to) return false;
        if (from == 0 && to == batch.Length && s <= Start.Value && e >= End.Value) return true;
        clipped = this with
        {
            Start = Hva.FromPageNumber(batch[from]),
            End = Hva.FromPageNumber(batch[to - 1] + 1),
            BatchPages = batch[from..to],
        };
        return true;
    }

    private static int LowerBound(ulong[] sorted, ulong value)
    {
        int i = Array.BinarySearch(sorted, value);
        return i >= 0 ? i : ~i;
    }

    public override string ToString() =>
        $"{Event} [{Start}, {End}){(BatchPages is { } b ? $" batch of {b.Length}" : "")}{(MayBlock ? "" : " nonblocking")}";
}
