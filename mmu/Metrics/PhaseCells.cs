using HdrHistogram;

namespace ToyVmm.Mmu.Metrics;

/// <summary>
/// What one thread recorded in one phase. Written by that thread only (no lock,
/// no interlocked operation); read by <see cref="MeasurementHub.Snapshot"/>, exactly
/// once the thread has stopped recording and racily (each count a torn-free
/// 64-bit read) while it runs.
/// </summary>
internal sealed class PhaseCells
{
    public readonly HistogramBase?[] Faults = new HistogramBase?[KindCount.Faults];
    public long Retries;
    public readonly HistogramBase?[] Invalidations = new HistogramBase?[KindCount.Causes];
    public readonly long[] InvalidatedPages = new long[KindCount.Causes];
    public readonly HistogramBase?[] Shootdowns = new HistogramBase?[KindCount.Steps];
    public HistogramBase? PageOutBatches;
    public long PagesPagedOut;
    public HistogramBase? SwapReads;
}

/// <summary>How many values each measurement kind enum has (array sizes).</summary>
internal static class KindCount
{
    public static readonly int Faults = Enum.GetValues<FaultKind>().Length;
    public static readonly int Causes = Enum.GetValues<InvalidateCause>().Length;
    public static readonly int Steps = Enum.GetValues<ShootdownStep>().Length;
}
