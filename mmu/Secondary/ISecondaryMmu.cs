namespace ToyVmm.Mmu.Secondary;

/// <summary>Outcome of translating a guest-physical page for a vCPU.</summary>
public enum TranslateStatus
{
    Ok = 0,
    /// <summary>No memory slot covers the address (an access to it is a VM error, or later an MMIO exit).</summary>
    Unbacked,
    /// <summary>The host could not provide a frame (out of memory, swap error).</summary>
    HostError,
    /// <summary>The access kind is not permitted (e.g. a write to a read-only slot).</summary>
    Protection,
}

/// <summary>
/// The only way a vCPU reaches guest RAM (DESIGN.md "The two walks", step 2).
/// A vCPU asks for the host page behind a guest-physical page for an access
/// kind; the secondary MMU answers from its table or takes a secondary fault.
/// It asks vCPUs to flush their TLBs through their <see cref="VcpuLink"/>.
/// </summary>
public interface ISecondaryMmu
{
    /// <summary>Bytes of guest RAM, guest-physical [0, RamBytes).</summary>
    ulong RamBytes { get; }

    /// <summary>Register a vCPU so that invalidations ask it to flush.</summary>
    void AttachVcpu(VcpuLink vcpu);

    /// <summary>Forget a vCPU (or VMM-side writer) that will not enter guest mode again.</summary>
    void DetachVcpu(VcpuLink vcpu);

    /// <summary>
    /// Translate the guest-physical page that holds <paramref name="gpa"/> for
    /// <paramref name="kind"/>. On <see cref="TranslateStatus.Ok"/>,
    /// <paramref name="hostPage"/> points at the 4 KiB host page.
    /// </summary>
    /// <remarks>
    /// Call in guest mode. The pointer may be cached in the vCPU's TLB and used
    /// until the vCPU next takes a flush request: an invalidation that unmaps
    /// the page waits for that acknowledgement before the frame is freed, unless
    /// the vCPU's <see cref="IVcpuTlb"/> lets it finish the shootdown from outside
    /// (mmu/LOCKING.md). The
    /// implementation may leave guest mode to fault and re-enter it before it
    /// returns; a caller that sees <see cref="VcpuLink.HasRequests"/> afterwards
    /// must flush first and translate again.
    /// </remarks>
    unsafe TranslateStatus Translate(VcpuLink vcpu, Gpa gpa, AccessKind kind, out byte* hostPage);

    /// <summary>
    /// Raised after guest-physical contents changed behind the vCPUs' back (DISCARD
    /// zeroes pages): anything derived from those bytes, such as decoded code, is stale.
    /// </summary>
    event Action<Gpa, ulong>? ContentsReplaced;

    /// <summary>Hypercall PAGEOUT: write the range's host pages to swap and free them. Returns pages acted on or -errno.</summary>
    long PageOut(Gpa start, ulong bytes);

    /// <summary>Hypercall DISCARD: drop the range's host pages; it reads as zero afterwards. Returns pages acted on or -errno.</summary>
    long Discard(Gpa start, ulong bytes);
}
