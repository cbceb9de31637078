using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// A host address space of the simulated host as the secondary side sees it:
/// what a secondary MMU needs (<see cref="IHostMemory"/>: get_user_pages of one
/// page, frame bytes, dirty hand-over, the notifier registry) and what the VMM's
/// manager calls for the hypercalls (<see cref="IHostMadvise"/>).
/// </summary>
/// <remarks>
/// It lives on the secondary side so that the host never names a secondary
/// type: the dependency points from Secondary to Host only (the architecture
/// test enforces it).
/// </remarks>
public sealed unsafe class SecondaryHostBinding(HostAddressSpace space) : IHostMemory, IHostMadvise
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

    /// <summary>The host's frames, read once: a frame's address is asked for at every TLB miss.</summary>
    private readonly FramePool _frames = space.Host.Frames;

    public byte* FrameAddress(Hfn frame) => _frames.PagePointer(frame);

    public void SetPageDirty(Hfn frame) => Space.Host.SetPageDirty(frame);

    public long PageOut(Hva start, ulong bytes) => Space.PageOut(start, bytes).PagedOut;

    public long PageOutPages(ReadOnlySpan<Hva> pages) => Space.PageOutPages(pages).PagedOut;

    public long DontNeed(Hva start, ulong bytes) => Space.DontNeed(start, bytes);

    public bool FrameBacks(Hfn frame, Hva address) => Space.FrameBacks(frame, address);
}
