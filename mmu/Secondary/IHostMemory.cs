using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Secondary;

/// <summary>Outcome of a host fault taken on behalf of a secondary fault.</summary>
public enum HostFaultResult
{
    Ok,
    /// <summary>No VMA covers the address.</summary>
    NoMapping,
    /// <summary>A write to a read-only mapping.</summary>
    Protection,
    /// <summary>No frame could be had, even after direct reclaim.</summary>
    OutOfMemory,
    /// <summary>The swap file could not be read or a slot failed its checksum.</summary>
    IoError,
}

/// <summary>
/// What a secondary MMU needs of the host address space that backs guest RAM:
/// get_user_pages of one page, the frames' bytes, the page flags it hands
/// dirty bits to, and the notifier registry it subscribes to. Giving references
/// back and handing dirty bits over (<see cref="IUserPageReferences"/>) is what
/// the registry's protocol may do on the MMU's behalf.
/// </summary>
public unsafe interface IHostMemory : IUserPageReferences
{
    MmuNotifierRegistry Notifiers { get; }

    /// <summary>
    /// Fault the page at <paramref name="address"/> in (zero-fill or swap-in;
    /// may block) and return its frame with a short-lived reference that the
    /// caller gives back with <see cref="IUserPageReferences.PutUserPage"/> (or, under a
    /// protocol whose mappings pin pages, keeps while its entry maps the frame). A reference keeps the
    /// frame from being freed; it does not keep the host PTE in place.
    /// </summary>
    HostFaultResult GetUserPage(Hva address, bool write, out Hfn frame);

    /// <summary>
    /// <see cref="GetUserPage(Hva, bool, out Hfn)"/>, also saying how the host answered
    /// (for the fault figures). A host that cannot tell reports <see cref="FaultKind.Present"/>.
    /// </summary>
    HostFaultResult GetUserPage(Hva address, bool write, out Hfn frame, out FaultKind kind)
    {
        kind = FaultKind.Present;
        return GetUserPage(address, write, out frame);
    }

    /// <summary>The 4 KiB of a frame (native memory that never moves).</summary>
    byte* FrameAddress(Hfn frame);

    /// <summary>For the invariant checker: true when the frame is allocated and the host PTE at <paramref name="address"/> maps it.</summary>
    bool FrameBacks(Hfn frame, Hva address);
}

/// <summary>
/// The madvise calls the VMM makes on the host address space that backs guest
/// RAM, as a userspace VMM does on its own mapping: they run through the host's
/// invalidation path, and the secondary MMUs hear of them through their notifiers.
/// </summary>
public interface IHostMadvise
{
    /// <summary>MADV_PAGEOUT over the range; returns the pages acted on.</summary>
    long PageOut(Hva start, ulong bytes);

    /// <summary>
    /// MADV_PAGEOUT of scattered pages as one request (process_madvise with a vector of
    /// one-page ranges): written to swap and freed in batches whatever the distance
    /// between them. Every page must be mapped; repeats count once. Returns the pages acted on.
    /// </summary>
    long PageOutPages(ReadOnlySpan<Hva> pages);

    /// <summary>MADV_DONTNEED over the range; returns the pages acted on.</summary>
    long DontNeed(Hva start, ulong bytes);
}
