using ToyVmm.Mmu.Host;

namespace ToyVmm.Cli;

/// <summary>
/// The words for a host failure that ended a VM: the guest-side access says where,
/// the host's counters and first error say why (a full disk, an I/O error, a swap
/// file changed behind the VMM's back, no frame to reclaim).
/// </summary>
public static class HostFailureCause
{
    public const string NoFrame = "out of host memory: no frame to reclaim";
    public const string OutOfSwapSpace = "out of swap space: the swap file's filesystem is full";

    /// <summary>
    /// The cause, from the host's counters; <paramref name="stats"/> null (flat memory) gives the
    /// generic cause. <paramref name="pinnedFrames"/>: frames the secondary MMU pins
    /// (<c>--notifier-protocol pin</c>), which reclaim cannot free.
    /// </summary>
    public static string Describe(HostStats? stats, long pinnedFrames = 0)
    {
        if (stats is null) return "the host could not back guest memory";
        // Pins hold the frames: nothing else explains the failure as well.
        if (pinnedFrames > 0 && Volatile.Read(ref stats.OutOfMemory) > 0)
            return $"{NoFrame}: {pinnedFrames} frames pinned by the secondary MMU (--notifier-protocol pin: without notifiers mapped guest pages cannot be reclaimed, an unswappable memlock leak)";
        // The first error is the cause; later ones may only follow from it.
        string? last = stats.FirstError;
        // A read that failed or came back wrong is the failure itself.
        if ((Volatile.Read(ref stats.SwapReadErrors) > 0 || Volatile.Read(ref stats.SwapChecksumErrors) > 0) && last is not null)
            return last;
        // Failed writes leave dirty pages that cannot be reclaimed: name the write failure as the reason.
        if (Volatile.Read(ref stats.SwapWriteErrors) > 0 && last is not null)
            return Volatile.Read(ref stats.SwapOutOfSpace) > 0 ? $"{last}; {OutOfSwapSpace}; {NoFrame}" : $"{last}; {NoFrame}";
        if (Volatile.Read(ref stats.SwapFull) > 0)
            return $"{NoFrame} (the swap file is full)";
        return NoFrame;
    }
}
