namespace ToyVmm.Mmu.Host;

/// <summary>Event counters of the host (interlocked increments; read at any time, exact when quiescent).</summary>
public sealed class HostStats
{
    public long ZeroFillFaults;
    public long SwapInsFromFile;
    public long SwapCacheHits;
    public long PagesWrittenToSwap;
    public long CleanPagesDropped;
    public long ZeroPagesDiscarded;
    public long SwapWriteErrors;
    /// <summary>Swap writes that failed because the swap file's filesystem is full (also counted in <see cref="SwapWriteErrors"/>).</summary>
    public long SwapOutOfSpace;
    public long SwapReadErrors;
    public long SwapChecksumErrors;
    public long SwapFull;
    public long ReclaimScanned;
    public long ReclaimFreed;
    /// <summary>Pages reclaim or a page-out could not unmap because someone else held a reference (a secondary MMU's pin, a fault in flight).</summary>
    public long ReclaimBusy;
    /// <summary>Reclaim passes that took pages off the LRU and freed none of them.</summary>
    public long ReclaimScansFailed;
    /// <summary>Invalidations reclaim ran: one per run of nearby pages, not one per page.</summary>
    public long ReclaimRuns;
    public long DirectReclaims;
    /// <summary>Rounds of the background reclaimer (woken below high, or retrying).</summary>
    public long BackgroundReclaimWakeups;
    /// <summary>Background reclaimer rounds that stopped below the high watermark for a reason that may pass (then retried after a back-off).</summary>
    public long BackgroundReclaimStalls;
    public long Invalidations;
    public long InvalidateRetries;
    public long OutOfMemory;

    private string? _lastError;
    private string? _firstError;

    /// <summary>The most recent swap error message, for reports.</summary>
    public string? LastError => Volatile.Read(ref _lastError);

    /// <summary>
    /// The first swap error message: the cause of a failure, where later errors may only
    /// follow from it (a truncated swap file fails one read, then reads of pages written
    /// past the new end come back wrong).
    /// </summary>
    public string? FirstError => Volatile.Read(ref _firstError);

    internal void Count(ref long counter, long n = 1) => Interlocked.Add(ref counter, n);

    internal void Error(ref long counter, string message)
    {
        Interlocked.Increment(ref counter);
        Interlocked.CompareExchange(ref _firstError, message, null);
        Volatile.Write(ref _lastError, message);
    }

    public override string ToString() =>
        $"zero-fill {ZeroFillFaults}, swap-in {SwapInsFromFile}, swap-cache hits {SwapCacheHits}, written {PagesWrittenToSwap}, " +
        $"clean dropped {CleanPagesDropped}, zero discarded {ZeroPagesDiscarded}, scanned {ReclaimScanned}, freed {ReclaimFreed}, busy {ReclaimBusy}, failed scans {ReclaimScansFailed}, " +
        $"direct {DirectReclaims}, invalidations {Invalidations}, write errors {SwapWriteErrors}, read errors {SwapReadErrors}, " +
        $"checksum errors {SwapChecksumErrors}, swap full {SwapFull}, oom {OutOfMemory}";
}
