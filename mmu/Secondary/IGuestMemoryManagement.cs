namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// Guest memory as the VMM manages it (the devices, the page-out schedule, the
/// CLI): the hypercalls that act on a guest-physical range and the notice that
/// contents changed behind the vCPUs' back. The vCPUs' side is <see cref="IGuestMemory"/>.
/// </summary>
/// <remarks>
/// Every range is checked once, by <see cref="GuestRange.Check"/>, the same way
/// for every implementation (page-aligned and inside guest RAM, else
/// <see cref="GuestRange.Invalid"/>). The stricter rule a guest's hypercall keeps
/// (GUEST-ABI.md: not empty, and never the VMM's reserved top) is the devices'
/// (<c>VmDevices</c>): the VMM itself may page out any part of RAM.
/// </remarks>
public interface IGuestMemoryManagement
{
    /// <summary>Bytes of guest RAM, guest-physical [0, RamBytes).</summary>
    ulong RamBytes { get; }

    /// <summary>
    /// Raised after guest-physical contents changed behind the vCPUs' back (DISCARD
    /// zeroes pages): anything derived from those bytes, such as decoded code, is stale.
    /// </summary>
    event Action<Gpa, ulong>? ContentsReplaced;

    /// <summary>Hypercall PAGEOUT: write the range's host pages to swap and free them. Returns pages acted on or <see cref="GuestRange.Invalid"/>.</summary>
    long PageOut(Gpa start, ulong bytes);

    /// <summary>
    /// PAGEOUT of a list of scattered guest pages as one request: the VMM's side only (the
    /// guest ABI has no vectored hypercall). The pages go to the host as one vectored
    /// page-out, so pages far apart still share batches: one notifier start and end, one
    /// zap pass and one shootdown per batch, not per page or per run of adjacent pages.
    /// Every entry must be page-aligned and inside guest RAM (<see cref="GuestRange.Check"/>
    /// of one page), else nothing is paged out and the answer is <see cref="GuestRange.Invalid"/>.
    /// Repeats count once. Returns pages acted on.
    /// </summary>
    long PageOutPages(ReadOnlySpan<Gpa> pages);

    /// <summary>Hypercall DISCARD: drop the range's host pages; it reads as zero afterwards. Returns pages acted on or <see cref="GuestRange.Invalid"/>.</summary>
    long Discard(Gpa start, ulong bytes);
}
