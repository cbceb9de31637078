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
/// Guest memory as the vCPUs access it: the only way a vCPU reaches guest RAM
/// (docs/DESIGN.md "The two walks", step 2). A vCPU asks for the host page behind
/// a guest-physical page for an access kind; a secondary MMU answers from its
/// table or takes a secondary fault; flat memory answers with an offset.
/// Management (slots, PAGEOUT/DISCARD, contents-replaced notices) is the VMM's
/// side, <see cref="IGuestMemoryManagement"/>.
/// </summary>
/// <remarks>
/// Attaching a <see cref="VcpuLink"/> belongs to access, not to management: the
/// link is the accessor's half of the shootdown contract (the pointers Translate
/// hands out stay valid until the link takes a flush request), so whoever
/// translates (a vCPU, or the VMM's own writer while it loads the guest)
/// attaches itself for as long as it holds pointers, and nobody else can know
/// that lifetime.
/// </remarks>
public interface IGuestMemory
{
    /// <summary>Bytes of guest RAM, guest-physical [0, RamBytes).</summary>
    ulong RamBytes { get; }

    /// <summary>Register an accessor so that invalidations ask it to flush.</summary>
    void AttachVcpu(VcpuLink vcpu);

    /// <summary>Forget an accessor (a vCPU or the VMM-side writer) that will not enter guest mode again.</summary>
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
}
