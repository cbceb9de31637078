namespace ToyVmm.Cli;

/// <summary>
/// Guest RAM on host memory is bounded by the swap space, not by the machine: untouched
/// guest pages cost no frame, no page table and no swap slot, and the swap file is
/// sparse, so it takes disk space only as pages go out. Like Linux, ToyVmm overcommits:
/// a guest larger than the host frames plus the room the swap file can grow into runs,
/// with a warning, and ends with a host failure only if it really touches that much.
/// </summary>
public static class SwapOvercommit
{
    /// <summary>
    /// The one-line warning when <paramref name="ramBytes"/> of guest RAM exceed
    /// <paramref name="frameBytes"/> of host frames plus the swap room (the smaller of the
    /// swap file's size and <paramref name="filesystemFreeBytes"/>); null when it fits, or
    /// when the filesystem does not say how much is free.
    /// </summary>
    public static string? Warning(ulong ramBytes, ulong frameBytes, ulong swapBytes, long? filesystemFreeBytes, string swapFolder)
    {
        if (filesystemFreeBytes is not long free || free < 0) return null;
        ulong room = Math.Min(swapBytes, (ulong)free);
        if (ramBytes <= frameBytes + room) return null;
        return $"guest RAM of {SizeParser.Format(ramBytes)} is more than the host can hold: {SizeParser.Format(frameBytes)} of host memory " +
               $"plus {Round(room)} of free space for the swap file on {swapFolder}; the run ends with status 5 (out of swap space) if the guest touches more";
    }

    /// <summary>A free-space figure rounded down to whole MiB (whole KiB below 1 MiB), in the units of the options.</summary>
    private static string Round(ulong bytes) =>
        bytes >= 1UL << 20 ? SizeParser.Format(bytes & ~((1UL << 20) - 1)) : SizeParser.Format(bytes & ~1023UL);
}
