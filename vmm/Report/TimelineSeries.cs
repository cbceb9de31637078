using System.Diagnostics;
using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Report;

/// <summary>
/// What <c>timeline.png</c> draws: faults, invalidations and pages paged out per
/// time bucket, free frames over time, and where each phase began. From a trace the
/// buckets are 10 ms wide; without one, each phase is one bucket holding its
/// average per 10 ms (<see cref="FromTrace"/> when a trace was recorded,
/// <see cref="FromPhases"/> otherwise).
/// </summary>
public sealed record TimelineSeries
{
    public const double BucketSeconds = 0.010;

    /// <summary>Start of each bucket, in seconds since the trace's origin; one more entry than the values (the last bucket's end).</summary>
    public required double[] Edges { get; init; }
    /// <summary>Faults that began in each bucket (per 10 ms).</summary>
    public required double[] Faults { get; init; }
    /// <summary>Invalidations that began in each bucket (per 10 ms).</summary>
    public required double[] Invalidations { get; init; }
    /// <summary>Pages written to swap by page-out batches that began in each bucket (per 10 ms).</summary>
    public required double[] PagesPagedOut { get; init; }
    /// <summary>Times (seconds) and values of the free-frame counter; empty without a trace.</summary>
    public required double[] CounterSeconds { get; init; }
    public required double[] FreeFrames { get; init; }
    /// <summary>Where each phase began (seconds) and its name.</summary>
    public required IReadOnlyList<(double Seconds, string Name)> Phases { get; init; }
    /// <summary>True when the figures are 10 ms buckets of a trace, false for per-phase averages.</summary>
    public required bool FromTimeline { get; init; }

    public static TimelineSeries FromTrace(TraceData trace)
    {
        ArgumentNullException.ThrowIfNull(trace);
        double secondsPerTick = 1.0 / Stopwatch.Frequency;
        double Seconds(long ticks) => Math.Max(0, (ticks - trace.OriginTicks) * secondsPerTick);
        double last = 0;
        foreach (var e in trace.Events) last = Math.Max(last, Seconds(Math.Max(e.StartTicks, e.EndTicks)));
        foreach (var c in trace.Counters) last = Math.Max(last, Seconds(c.Ticks));
        int buckets = (int)(last / BucketSeconds) + 1;
        var faults = new double[buckets];
        var invalidations = new double[buckets];
        var pages = new double[buckets];
        var phases = new List<(double, string)>();
        foreach (var e in trace.Events)
        {
            int b = Math.Min(buckets - 1, (int)(Seconds(e.StartTicks) / BucketSeconds));
            switch (e.Kind)
            {
                case TraceKind.Fault: faults[b]++; break;
                case TraceKind.Invalidate: invalidations[b]++; break;
                case TraceKind.PageOutBatch: pages[b] += e.B; break;
                case TraceKind.Phase:
                    phases.Add((Seconds(e.StartTicks), (uint)e.C < (uint)trace.PhaseNames.Count ? trace.PhaseNames[e.C] : $"phase {e.C}"));
                    break;
            }
        }
        phases.Sort((x, y) => x.Item1.CompareTo(y.Item1));
        return new TimelineSeries
        {
            Edges = [.. Enumerable.Range(0, buckets + 1).Select(i => i * BucketSeconds)],
            Faults = faults,
            Invalidations = invalidations,
            PagesPagedOut = pages,
            CounterSeconds = [.. trace.Counters.Select(c => Seconds(c.Ticks))],
            FreeFrames = [.. trace.Counters.Select(c => (double)c.FreeFrames)],
            Phases = phases,
            FromTimeline = true,
        };
    }

    /// <summary>Per-phase averages laid end to end (the phases' wall times), for a run without a trace.</summary>
    public static TimelineSeries FromPhases(IReadOnlyList<PhaseFigures> phases)
    {
        var edges = new double[phases.Count + 1];
        for (int i = 0; i < phases.Count; i++) edges[i + 1] = edges[i] + Math.Max(0, phases[i].WallSeconds);
        double PerBucket(long n, int i) => phases[i].WallSeconds > 0 ? n * BucketSeconds / phases[i].WallSeconds : 0;
        return new TimelineSeries
        {
            Edges = edges,
            Faults = [.. phases.Select((p, i) => PerBucket(p.Faults.Values.Sum(h => h.TotalCount), i))],
            Invalidations = [.. phases.Select((p, i) => PerBucket(p.Invalidations.Values.Sum(h => h.TotalCount), i))],
            PagesPagedOut = [.. phases.Select((p, i) => PerBucket(p.PagesPagedOut, i))],
            CounterSeconds = [],
            FreeFrames = [],
            Phases = [.. phases.Select((p, i) => (edges[i], p.Name))],
            FromTimeline = false,
        };
    }
}
