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

    /// <summary>Hypercall DISCARD: drop the range's host pages; it reads as zero afterwards. Returns pages acted on or <see cref="GuestRange.Invalid"/>.</summary>
    long Discard(Gpa start, ulong bytes);
}
