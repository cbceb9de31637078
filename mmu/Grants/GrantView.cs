using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Grants;

/// <summary>
/// A grant as one attacher's secondary MMU sees it: the host that MMU faults
/// through (<see cref="IHostMemory"/>), a third kind beside the simulated host
/// (<see cref="SecondaryHostBinding"/>) and a test host. Its addresses are the
/// owner's (the attacher's slot maps its guest range onto the grant's host-virtual
/// range), get_user_pages answers from the grant's PFN table, and its notifier
/// registry, where the attacher's MMU subscribes, follows <see cref="GrantProtocol"/>:
/// the grant's recall is the only thing that calls it.
/// </summary>
/// <remarks>
/// Any secondary MMU written against <see cref="IHostMemory"/> (EPT, shadow) maps
/// a grant this way with no code of its own for grants.
/// </remarks>
public sealed unsafe class GrantView : IHostMemory
{
    internal GrantView(Grant grant, ulong bytes)
    {
        Grant = grant;
        Bytes = bytes;
        Notifiers = new MmuNotifierRegistry { Protocol = GrantProtocol.Instance };
    }

    public Grant Grant { get; }
    /// <summary>The first <see cref="Bytes"/> of the grant are attached.</summary>
    public ulong Bytes { get; }
    /// <summary>Where the attacher's slot points: the grant's start in the owner's host address space.</summary>
    public Hva Start => Grant.Start;

    /// <summary>Set (under the grant's mutex) when the attacher detaches or the grant goes: faults find nothing.</summary>
    internal bool ClosedLocked;

    public MmuNotifierRegistry Notifiers { get; }

    public HostFaultResult GetUserPage(Hva address, bool write, out Hfn frame) => GetUserPage(address, write, out frame, out _);

    public HostFaultResult GetUserPage(Hva address, bool write, out Hfn frame, out FaultKind kind)
    {
        frame = default;
        kind = FaultKind.Present;
        if (address.Value < Start.Value || address.Value >= Start.Value + Bytes) return HostFaultResult.NoMapping;
        return Grant.GetUserPage(this, address.OffsetFrom(Start) >> Page.Shift, out frame, out kind);
    }

    /// <summary>
    /// The fault through this view is over: it took no reference of its own, so nothing
    /// is put on the host. Takes no lock (the MMU may hold its own).
    /// </summary>
    public void PutUserPage(Hfn frame, PageRelease how)
    {
        if (GrantFaulter.Current is { } f && f.Grant == Grant) Grant.PutUserPage(f);
    }

    public byte* FrameAddress(Hfn frame) => Grant.OwnerHost.FrameAddress(frame);

    /// <summary>A zapped attacher entry was dirty: the owner's page is (the grant still holds it while anything maps it).</summary>
    public void SetPageDirty(Hfn frame) => Grant.OwnerHost.SetPageDirty(frame);

    /// <summary>The owner's host PTE maps the frame at the address: what the checker holds attachers' entries to.</summary>
    public bool FrameBacks(Hfn frame, Hva address) => Grant.OwnerHost.FrameBacks(frame, address);
}
