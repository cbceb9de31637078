namespace ToyVmm.Mmu.Metrics;

/// <summary>
/// What one thread recorded in one phase. Written by that thread only (no lock,
/// no interlocked operation); read by <see cref="MeasurementHub.Snapshot"/>, exactly
/// once the thread has stopped recording and racily (each count a torn-free
/// 64-bit read) while it runs.
/// </summary>
internal sealed class PhaseCells
{
    public readonly LatencyCounts?[] Faults = new LatencyCounts?[KindCount.Faults];
    public long Retries;
    public readonly LatencyCounts?[] Invalidations = new LatencyCounts?[KindCount.Causes];
    public readonly long[] InvalidatedPages = new long[KindCount.Causes];
    public readonly LatencyCounts?[] Shootdowns = new LatencyCounts?[KindCount.Steps];
    public LatencyCounts? PageOutBatches;
    public long PagesPagedOut;
    public LatencyCounts? SwapReads;
}

/// <summary>How many values each measurement kind enum has (array sizes).</summary>
internal static class KindCount
{
    public static readonly int Faults = Enum.GetValues<FaultKind>().Length;
    public static readonly int Causes = Enum.GetValues<InvalidateCause>().Length;
    public static readonly int Steps = Enum.GetValues<ShootdownStep>().Length;
}
