using HdrHistogram;

namespace ToyVmm.Mmu.Metrics;

/// <summary>
/// Every figure of one phase (GUEST-ABI 1.1 PHASE), or of the whole run. Latency
/// histograms count nanoseconds at 3 significant digits and are merged over every
/// recording thread; the kinds a run never saw have empty histograms. A phase's histograms
/// span only the values it holds, and its empty ones are one histogram shared by the whole
/// snapshot: read them, or add them into a histogram of your own; never record into them.
/// </summary>
public sealed class PhaseFigures
{
    /// <summary>The phase name (<c>boot</c> before the first PHASE; <c>total</c> for the whole run).</summary>
    public required string Name { get; init; }
    /// <summary>Instructions retired by every vCPU in the phase.</summary>
    public long Instructions { get; init; }
    /// <summary>Wall time spent in the phase (summed over its stretches when a name is continued).</summary>
    public double WallSeconds { get; init; }

    /// <summary>Secondary fault latency by how the host answered.</summary>
    public required IReadOnlyDictionary<FaultKind, HistogramBase> Faults { get; init; }
    /// <summary>Faults that dropped their page and retried (an invalidation overlapped them).</summary>
    public long FaultRetries { get; init; }

    /// <summary>Invalidation latency (notifier start to end, as the invalidating thread saw it) by cause.</summary>
    public required IReadOnlyDictionary<InvalidateCause, HistogramBase> Invalidations { get; init; }
    /// <summary>Pages the invalidations of each cause covered.</summary>
    public required IReadOnlyDictionary<InvalidateCause, long> InvalidatedPages { get; init; }

    /// <summary>How long the invalidator waited for each vCPU's flush, by the step that completed it.</summary>
    public required IReadOnlyDictionary<ShootdownStep, HistogramBase> ShootdownWaits { get; init; }

    /// <summary>Latency of each batch of pages written to swap (reclaim and forced page-outs).</summary>
    public required HistogramBase PageOutBatches { get; init; }
    /// <summary>Pages written to swap or dropped clean by those batches.</summary>
    public long PagesPagedOut { get; init; }
    /// <summary>Latency of each read from the swap file.</summary>
    public required HistogramBase SwapReads { get; init; }
}

/// <summary>A timeline track of the trace: one per vCPU (<c>vCPU n</c>), the reclaimer, the page-out driver, swap I/O.</summary>
public sealed record TraceTrack(int Id, string Name);

/// <summary>What a trace slice or instant shows.</summary>
public enum TraceKind : byte
{
    /// <summary>A secondary fault: A = guest-physical page number, B = (long)<see cref="FaultKind"/>, C = vCPU (-1: the VMM's own access).</summary>
    Fault,
    /// <summary>Invalidate start to end: A = first host-virtual page, B = pages, C = (int)<see cref="InvalidateCause"/>.</summary>
    Invalidate,
    /// <summary>A wait for one vCPU's flush: A = vCPU, C = (int)<see cref="ShootdownStep"/>.</summary>
    ShootdownWait,
    /// <summary>A batch of pages written to swap: B = pages.</summary>
    PageOutBatch,
    /// <summary>A write to the swap file: A = first slot, B = pages.</summary>
    SwapWrite,
    /// <summary>A read from the swap file: A = slot, B = pages.</summary>
    SwapRead,
    /// <summary>A phase: C = index into <see cref="TraceData.PhaseNames"/>; on no thread's track (Track = MeasurementHub.PhaseTrack, -1).</summary>
    Phase,
    /// <summary>The checker found a violation: A = guest-physical page number, B = host frame, C = vCPU or -1.</summary>
    Violation,
}

/// <summary>
/// One recorded slice (<see cref="StartTicks"/> &lt; <see cref="EndTicks"/>) or instant
/// (equal) on a track; times are <see cref="System.Diagnostics.Stopwatch"/> ticks.
/// </summary>
public readonly record struct TraceEvent(long StartTicks, long EndTicks, int Track, TraceKind Kind, ulong A, ulong B, int C);

/// <summary>A sample of the counter tracks.</summary>
public readonly record struct CounterSample(long Ticks, int FreeFrames, long ResidentGuestPages);

/// <summary>The timeline of a run, in time order; bounded, so it says how many events were dropped.</summary>
public sealed class TraceData
{
    public required long OriginTicks { get; init; }
    public required IReadOnlyList<TraceTrack> Tracks { get; init; }
    public required IReadOnlyList<TraceEvent> Events { get; init; }
    public required IReadOnlyList<CounterSample> Counters { get; init; }
    public required IReadOnlyList<string> PhaseNames { get; init; }
    public long DroppedEvents { get; init; }
}

/// <summary>What the measurement hub hands the report, the table, the plots and the trace at the end of a run.</summary>
public sealed class MeasurementSnapshot
{
    /// <summary>Every phase in the order it first began; at least <c>boot</c>.</summary>
    public required IReadOnlyList<PhaseFigures> Phases { get; init; }
    /// <summary>The whole run (every phase merged).</summary>
    public required PhaseFigures Total { get; init; }
    /// <summary>Shootdown counts by step over the run (including flushes that did not wait).</summary>
    public required IReadOnlyDictionary<ShootdownStep, long> ShootdownCounts { get; init; }
    /// <summary>The timeline, when tracing was on.</summary>
    public TraceData? Trace { get; init; }
}
