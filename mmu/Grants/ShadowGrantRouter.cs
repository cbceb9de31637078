using ToyVmm.Mmu.Secondary;
using ToyVmm.Mmu.Secondary.Shadow;

namespace ToyVmm.Mmu.Grants;

/// <summary>
/// The router of a VM on the shadow MMU (docs/DESIGN.md "Grants under the shadow
/// MMU"): its vCPUs translate guest-virtual pages through the VM's own shadow MMU,
/// and the one place a guest-virtual translation learns its guest-physical page,
/// the fill after the guest walk, is where an attached page is diverted to its
/// attachment's MMU, exactly as <see cref="GrantRouter.Translate"/> diverts a
/// guest-physical translation.
/// </summary>
/// <remarks>
/// A page of an attached range is never installed in the VM's own shadow tables: the
/// attachment's MMU (a shadow MMU over the grant's view, translating guest-physical
/// pages through its direct role) holds its only entry, so the grant's recall zaps and
/// shoots down exactly as for an EPT attacher, and the vCPU caches the page in its TLB
/// by its guest-physical page as for any other. The cost: every TLB miss on an attached
/// page walks the guest tables. A walk through a guest page table that lies in an
/// attached range is diverted too (the own MMU cannot write-protect a page another MMU
/// maps), so nothing in the own shadow tables is derived from an attached page.
/// An own entry of an attached page can only come from a fill that raced the attach
/// (it read the list before the publish); the hit path refuses it and the vCPU fills
/// again, through the attachment.
/// </remarks>
public sealed unsafe class ShadowGrantRouter(ISecondaryMmu own, IShadowPaging shadow) : GrantRouter(own), IShadowPaging
{
    public VirtualStatus TranslateVirtual(VcpuLink vcpu, ShadowContext context, ulong va, AccessKind kind, bool user, bool wp,
        out byte* hostPage, out ulong gpa)
    {
        var st = shadow.TranslateVirtual(vcpu, context, va, kind, user, wp, out hostPage, out gpa);
        if (st == VirtualStatus.Ok && Covering(Published, new Gpa(gpa)) is not null)
        {
            hostPage = null;
            return VirtualStatus.Miss;   // a stale own entry of a page now attached: fill through the attachment
        }
        return st;
    }

    public VirtualStatus FillVirtual(VcpuLink vcpu, ShadowContext context, ulong va, in GuestWalk walk, AccessKind kind,
        out byte* hostPage, out bool writeTrap)
    {
        var list = Published;
        VirtualStatus st;
        var data = new Gpa(walk.Gpa).PageBase;
        var attached = Covering(list, data);
        if (attached is null && !WalkTouches(list, walk))
            st = shadow.FillVirtual(vcpu, context, va, in walk, kind, out hostPage, out writeTrap);
        else
        {
            // Guest-physical, through the MMU the data page belongs to: no shadow entry.
            writeTrap = false;
            IGuestMemory target = attached?.Mmu ?? Own;
            st = target.Translate(vcpu, data, kind, out hostPage) switch
            {
                TranslateStatus.Ok => VirtualStatus.Ok,
                TranslateStatus.Unbacked => VirtualStatus.Unbacked,
                TranslateStatus.Protection => VirtualStatus.Protection,
                _ => VirtualStatus.HostError,
            };
        }
        // An attach or detach in the meantime may have zapped what was installed, or moved
        // the page to another MMU: walk again.
        if (!ReferenceEquals(Published, list))
        {
            hostPage = null;
            writeTrap = false;
            return VirtualStatus.Retry;
        }
        return st;
    }

    public void PageTableWritten(VcpuLink vcpu, ulong gpa, int bytes) => shadow.PageTableWritten(vcpu, gpa, bytes);

    /// <summary>Whether a guest page table the walk read lies in an attached range.</summary>
    private static bool WalkTouches(Attachment[] list, GuestWalk walk)
    {
        if (list.Length == 0) return false;
        for (int i = 0; i < walk.Depth; i++)
            if (Covering(list, new Gpa(walk.EntryGpa[i]).PageBase) is not null) return true;
        return false;
    }
}
