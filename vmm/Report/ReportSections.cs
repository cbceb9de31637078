namespace ToyVmm.Report;

// The subtrees of the JSON report. Property names become the report's field names
// in camelCase (ReportWriter), in declaration order; README "Reports, traces and
// plots" documents each one and they are stable: add fields, never rename them.

/// <summary>A latency distribution in nanoseconds: how many, and where its percentiles lie.</summary>
public sealed record LatencyFigures
{
    public required long Count { get; init; }
    public required long P50Ns { get; init; }
    public required long P90Ns { get; init; }
    public required long P99Ns { get; init; }
    public required long P999Ns { get; init; }
    public required long MaxNs { get; init; }
    public required double MeanNs { get; init; }

    public static readonly LatencyFigures Empty = new() { Count = 0, P50Ns = 0, P90Ns = 0, P99Ns = 0, P999Ns = 0, MaxNs = 0, MeanNs = 0 };
}

/// <summary>Secondary faults by how the host answered (<c>faults</c>).</summary>
public sealed record FaultsSection
{
    /// <summary>Faults of every kind.</summary>
    public required long Count { get; init; }
    public required LatencyFigures Present { get; init; }
    public required LatencyFigures ZeroFill { get; init; }
    public required LatencyFigures SwapCacheHit { get; init; }
    public required LatencyFigures SwapIn { get; init; }
    /// <summary>Faults that dropped their page and retried because an invalidation overlapped them.</summary>
    public required long Retries { get; init; }
}

/// <summary>Invalidations of one cause, or of all (<c>invalidations</c>, <c>invalidations.byEvent.&lt;event&gt;</c>).</summary>
public sealed record InvalidationFigures
{
    public required long Count { get; init; }
    /// <summary>Guest pages the invalidations covered.</summary>
    public required long Pages { get; init; }
    public required long P50Ns { get; init; }
    public required long P90Ns { get; init; }
    public required long P99Ns { get; init; }
    public required long P999Ns { get; init; }
    public required long MaxNs { get; init; }
    public required double MeanNs { get; init; }
}

/// <summary>Invalidations by the host operation that asked for them (<c>invalidations.byEvent</c>).</summary>
public sealed record InvalidationsByEvent
{
    public required InvalidationFigures Reclaim { get; init; }
    public required InvalidationFigures PageOut { get; init; }
    public required InvalidationFigures Discard { get; init; }
    public required InvalidationFigures Unmap { get; init; }
    public required InvalidationFigures Protect { get; init; }
    public required InvalidationFigures Teardown { get; init; }
}

/// <summary>Every invalidation, then by event (<c>invalidations</c>).</summary>
public sealed record InvalidationsSection
{
    public required long Count { get; init; }
    public required long Pages { get; init; }
    public required long P50Ns { get; init; }
    public required long P90Ns { get; init; }
    public required long P99Ns { get; init; }
    public required long P999Ns { get; init; }
    public required long MaxNs { get; init; }
    public required double MeanNs { get; init; }
    public required InvalidationsByEvent ByEvent { get; init; }
}

/// <summary>TLB shootdowns: per-vCPU flush waits and the step that completed each (<c>shootdown</c>).</summary>
public sealed record ShootdownSection
{
    /// <summary>Per-vCPU flushes over the run, including those that did not wait.</summary>
    public required long Count { get; init; }
    /// <summary>Median wait for a vCPU's flush.</summary>
    public required long P50Ns { get; init; }
    public required long P99Ns { get; init; }
    public required long MaxNs { get; init; }
    /// <summary>Completed because the vCPU's filter showed it never held the range.</summary>
    public required long NeverHeld { get; init; }
    /// <summary>The vCPU acknowledged within the short spin.</summary>
    public required long Acknowledged { get; init; }
    /// <summary>Shot down from outside while the vCPU was at a quiet instruction.</summary>
    public required long ShotDown { get; init; }
    /// <summary>The invalidator blocked until the vCPU acknowledged.</summary>
    public required long Waited { get; init; }
}

/// <summary>Host page-out batches and swap reads (<c>swap</c>).</summary>
public sealed record SwapSection
{
    /// <summary>Latency of each batch of pages written to swap (reclaim and forced page-outs).</summary>
    public required LatencyFigures PageOutBatches { get; init; }
    /// <summary>Pages written to swap or dropped clean by those batches.</summary>
    public required long PagesPagedOut { get; init; }
    /// <summary>Latency of each read from the swap file.</summary>
    public required LatencyFigures Reads { get; init; }
}

/// <summary>The host's counters at the end (<c>host</c>); absent for <c>--flat-memory</c>.</summary>
public sealed record HostSection
{
    public required long FramesTotal { get; init; }
    public required long FramesFree { get; init; }
    public required long PageOuts { get; init; }
    public required long SwapIns { get; init; }
    public required long SwapCacheHits { get; init; }
    public required long ZeroFills { get; init; }
    public required long WriteErrors { get; init; }
    public required long ReadErrors { get; init; }
    public required long ChecksumErrors { get; init; }
    /// <summary>Further counters by name, in a stable order.</summary>
    public required IReadOnlyDictionary<string, long> Other { get; init; }
}

/// <summary>The invariant checker (<c>checker</c>).</summary>
public sealed record CheckerSection
{
    public required bool Enabled { get; init; }
    public required long Violations { get; init; }
    /// <summary>The first violation as the checker wrote it, or null.</summary>
    public string? FirstViolation { get; init; }
}

/// <summary>The timeline's size (<c>trace</c>); absent when no trace was recorded.</summary>
public sealed record TraceSection
{
    public required long Events { get; init; }
    public required long DroppedEvents { get; init; }
    public required long CounterSamples { get; init; }
}

/// <summary>One phase of the run (<c>phases[i]</c>, GUEST-ABI 1.1 PHASE): the first is <c>boot</c>.</summary>
public sealed record PhaseReport
{
    public required string Name { get; init; }
    public required long Instructions { get; init; }
    public required double WallSeconds { get; init; }
    public required double Mips { get; init; }
    public required FaultsSection Faults { get; init; }
    public required InvalidationsSection Invalidations { get; init; }
}
