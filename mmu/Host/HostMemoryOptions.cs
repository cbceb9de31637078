namespace ToyVmm.Mmu.Host;

/// <summary>
/// Size and policy of the simulated host: the frame pool (the VM's host-memory
/// option), the free-frame watermarks and the swap file. Validated when the
/// host is built (<see cref="Validate"/>).
/// </summary>
public sealed class HostMemoryOptions
{
    /// <summary>Bytes of host physical memory (the frame pool); a multiple of 4 KiB.</summary>
    public ulong HostMemoryBytes { get; set; } = 64UL << 20;

    /// <summary>
    /// Free frames below which allocation reclaims directly. 0 picks a default
    /// (1/64 of the pool, at least 8). Low and high default to 2x and 3x min.
    /// </summary>
    public int MinFreeFrames { get; set; }
    public int LowFreeFrames { get; set; }
    public int HighFreeFrames { get; set; }

    /// <summary>The swap file. Null: a temporary file, created 0600 and deleted when the host is disposed.</summary>
    public string? SwapFilePath { get; set; }

    /// <summary>Bytes of swap; a multiple of 4 KiB; 0 disables swap (dirty pages can then not be reclaimed).</summary>
    public ulong SwapBytes { get; set; } = 1UL << 30;

    /// <summary>Pages a reclaim pass takes off the LRU at once.</summary>
    public int ReclaimBatch { get; set; } = 32;

    /// <summary>
    /// The background reclaimer invalidates with may-block false (subscribers
    /// that would have to block refuse, and the reclaimer backs off and retries)
    /// for this many tries before it falls back to a blocking invalidation.
    /// </summary>
    public int NonBlockingTries { get; set; } = 2;

    public int FrameCount => (int)(HostMemoryBytes >> Page.Shift);

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad setting.</summary>
    public void Validate()
    {
        if (HostMemoryBytes == 0 || (HostMemoryBytes & Page.OffsetMask) != 0)
            throw new ArgumentException($"host memory must be a positive multiple of 4 KiB (got {HostMemoryBytes})");
        if ((HostMemoryBytes >> Page.Shift) < 64)
            throw new ArgumentException($"host memory must be at least 64 frames (256 KiB), got {HostMemoryBytes >> Page.Shift}");
        if ((HostMemoryBytes >> Page.Shift) >= int.MaxValue / 2)
            throw new ArgumentException($"host memory of {HostMemoryBytes} bytes is too large for the frame pool");
        if ((SwapBytes & Page.OffsetMask) != 0)
            throw new ArgumentException($"swap size must be a multiple of 4 KiB (got {SwapBytes})");
        if ((SwapBytes >> Page.Shift) >= uint.MaxValue - 1)
            throw new ArgumentException($"swap of {SwapBytes} bytes has too many slots");
        if (MinFreeFrames < 0 || LowFreeFrames < 0 || HighFreeFrames < 0)
            throw new ArgumentException("watermarks must not be negative");
        var (min, low, high) = Watermarks();
        if (!(min > 0 && min <= low && low <= high && high < FrameCount / 2))
            throw new ArgumentException($"watermarks must satisfy 0 < min <= low <= high < frames/2 (min {min}, low {low}, high {high}, frames {FrameCount})");
        if (ReclaimBatch is < 1 or > 1024)
            throw new ArgumentException($"reclaim batch must be in [1, 1024] (got {ReclaimBatch})");
        if (NonBlockingTries < 0)
            throw new ArgumentException("non-blocking tries must not be negative");
    }

    /// <summary>The effective (min, low, high) free-frame watermarks.</summary>
    public (int Min, int Low, int High) Watermarks()
    {
        int min = MinFreeFrames > 0 ? MinFreeFrames : Math.Max(8, FrameCount / 64);
        int low = LowFreeFrames > 0 ? LowFreeFrames : min * 2;
        int high = HighFreeFrames > 0 ? HighFreeFrames : min * 3;
        return (min, low, high);
    }
}
