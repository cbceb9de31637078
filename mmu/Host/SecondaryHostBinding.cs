using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Host;

/// <summary>
/// The host address space as the secondary MMU sees it (<see cref="IHostMemory"/>):
/// get_user_pages of one page, frame bytes, dirty hand-over, the forced
/// operations behind the hypercalls, and the notifier registry.
/// </summary>
public sealed unsafe class SecondaryHostBinding(HostAddressSpace space) : IHostMemory
{
    public HostAddressSpace Space { get; } = space;

    public MmuNotifierRegistry Notifiers => Space.Notifiers;

    public HostFaultResult GetUserPage(Hva address, bool write, out Hfn frame) =>
        GetUserPage(address, write, out frame, out _);

    public HostFaultResult GetUserPage(Hva address, bool write, out Hfn frame, out FaultKind kind) =>
        Space.GetUserPage(address, write, out frame, out kind) switch
        {
            HostFaultStatus.Ok => HostFaultResult.Ok,
            HostFaultStatus.BadAddress => HostFaultResult.NoMapping,
            HostFaultStatus.Protection => HostFaultResult.Protection,
            HostFaultStatus.OutOfMemory => HostFaultResult.OutOfMemory,
            _ => HostFaultResult.IoError,
        };

    public void PutUserPage(Hfn frame, PageRelease how) => Space.Host.ReleasePage(frame, how);

    public byte* FrameAddress(Hfn frame) => Space.Host.PagePointer(frame);

    public void SetPageDirty(Hfn frame) => Space.Host.SetPageDirty(frame);

    public long PageOut(Hva start, ulong bytes) => Space.PageOut(start, bytes).PagedOut;

    public long DontNeed(Hva start, ulong bytes) => Space.DontNeed(start, bytes);

    public bool FrameBacks(Hfn frame, Hva address) => Space.FrameBacks(frame, address);
}
