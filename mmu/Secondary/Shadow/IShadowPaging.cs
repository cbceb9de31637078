namespace ToyVmm.Mmu.Secondary.Shadow;

/// <summary>Outcome of a guest-virtual translation through the shadow tables.</summary>
public enum VirtualStatus
{
    Ok = 0,
    /// <summary>No shadow entry grants the access: walk the guest tables and call <see cref="IShadowPaging.FillVirtual"/>.</summary>
    Miss,
    /// <summary>The guest tables changed under the fill (or a table page was taken away): walk again.</summary>
    Retry,
    /// <summary>No memory slot covers the guest-physical page.</summary>
    Unbacked,
    /// <summary>The host could not provide a frame.</summary>
    HostError,
    /// <summary>A write to a read-only slot.</summary>
    Protection,
}

/// <summary>
/// What a vCPU's paging state contributes to a shadow translation: CR3's frame,
/// EFER.NXE, and the root the MMU last gave for them. Owned by one vCPU and
/// used only on its thread; reset (<see cref="Reset"/>) at every CR3, CR0, CR4 or EFER write.
/// </summary>
public sealed class ShadowContext
{
    /// <summary>Guest-physical address of the PML4 (CR3 without its low bits).</summary>
    public ulong Cr3 { get; private set; }
    public bool Nxe { get; private set; }

    /// <summary>The root shadow page of (Cr3, Nxe) the MMU found last; null until the next fill.</summary>
    internal ShadowPage? Root;

    public void Reset(ulong cr3, bool nxe)
    {
        Cr3 = cr3 & 0x000F_FFFF_FFFF_F000;
        Nxe = nxe;
        Root = null;
    }
}

/// <summary>
/// The guest walk of one address as the vCPU did it (PageWalk.cs): the guest
/// page-table page and the entry read at each level, top first, and the
/// guest-physical address it gave. The shadow MMU builds its tables from it
/// and re-checks every entry under its lock before it installs anything.
/// </summary>
public unsafe struct GuestWalk
{
    /// <summary>Guest-physical address of the entry read at step i (level 4 - i).</summary>
    public fixed ulong EntryGpa[4];
    /// <summary>The entry read at step i, before this walk set its accessed or dirty bit.</summary>
    public fixed ulong Entry[4];
    /// <summary>Steps taken: 4 for a 4 KiB page, 3 for 2 MiB, 2 for 1 GiB.</summary>
    public int Depth;
    /// <summary>The guest-physical address the walk gave.</summary>
    public ulong Gpa;
}

/// <summary>
/// Guest-virtual access through a shadow MMU (docs/DESIGN.md "The shadow MMU"):
/// what a vCPU with paging on calls on a TLB miss instead of walking the guest
/// tables and translating the guest-physical page. Found on the vCPU's
/// <see cref="IGuestMemory"/>; a memory without it is translated the EPT way.
/// </summary>
/// <remarks>
/// Every call is made in guest mode on the vCPU's thread; the pointer returned
/// follows the rule of <see cref="IGuestMemory.Translate"/> (usable until the
/// vCPU takes a flush request; check <see cref="VcpuLink.HasRequests"/> afterwards).
/// </remarks>
public unsafe interface IShadowPaging
{
    /// <summary>
    /// One lock-free walk of the shadow tables. <see cref="VirtualStatus.Ok"/> gives the host page and the
    /// guest-physical page of <paramref name="va"/>; <see cref="VirtualStatus.Miss"/> when no entry grants
    /// <paramref name="kind"/> to a <paramref name="user"/> access under CR0.WP = <paramref name="wp"/>.
    /// </summary>
    VirtualStatus TranslateVirtual(VcpuLink vcpu, ShadowContext context, ulong va, AccessKind kind, bool user, bool wp,
        out byte* hostPage, out ulong gpa);

    /// <summary>
    /// After a miss and the vCPU's own guest walk (which raised any #PF): fault the page in and install the
    /// shadow entry. <paramref name="writeTrap"/>: the page is a write-protected guest page table; write through
    /// <paramref name="hostPage"/> without caching it, then call <see cref="PageTableWritten"/>.
    /// </summary>
    VirtualStatus FillVirtual(VcpuLink vcpu, ShadowContext context, ulong va, in GuestWalk walk, AccessKind kind,
        out byte* hostPage, out bool writeTrap);

    /// <summary>The vCPU wrote <paramref name="bytes"/> bytes at <paramref name="gpa"/> of a write-protected guest page table: zap what they change.</summary>
    void PageTableWritten(VcpuLink vcpu, ulong gpa, int bytes);
}
