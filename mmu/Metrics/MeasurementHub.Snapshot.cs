using HdrHistogram;

namespace ToyVmm.Mmu.Metrics;

// Building the snapshot: every recorder's cells of each phase added into fresh
// histograms. Exact once the recording threads have stopped (after the vCPUs
// are joined and the background threads stopped); while they run, a snapshot
// is a racy but safe view (each count read whole).
public sealed partial class MeasurementHub
{
    /// <summary>Every figure so far, per phase and for the whole run, and the timeline when tracing is on.</summary>
    public MeasurementSnapshot Snapshot()
    {
        string[] names;
        long[] instructions, ticks;
        long openStart, openEnd;
        int current;
        lock (_phaseLock)
        {
            SettleLocked();
            names = [.. _phaseNames];
            instructions = [.. _phaseInstructions];
            ticks = [.. _phaseTicks];
            current = _phase;
            openEnd = _stretchStart;
            openStart = _lastSwitchAt;
        }
        var recorders = Volatile.Read(ref _recorders);
        var phases = new PhaseFigures[names.Length];
        var empty = LatencyScale.NewHistogram(0);   // every empty kind of every phase (16 KiB each otherwise)
        for (int p = 0; p < names.Length; p++)
            phases[p] = Merge(names[p], instructions[p], LatencyScale.TicksToSeconds(ticks[p]), recorders, p, empty);
        var total = Total(phases);
        var counts = new Dictionary<ShootdownStep, long>();
        foreach (var (step, h) in total.ShootdownWaits) counts[step] = h.TotalCount;
        return new MeasurementSnapshot
        {
            Phases = phases,
            Total = total,
            ShootdownCounts = counts,
            Trace = TracingOn ? BuildTrace(recorders, names, current, openStart, openEnd) : null,
        };
    }

    /// <remarks>
    /// A phase's histograms span only the values it holds, and its empty kinds share
    /// <paramref name="empty"/>: a guest may declare a thousand phases, and full-range
    /// histograms for every kind of every phase took 3.6 GB in one snapshot.
    /// </remarks>
    private static PhaseFigures Merge(string name, long instructions, double seconds, ThreadRecorder[] recorders, int phase, HistogramBase empty)
    {
        var cells = recorders.Select(r => r.CellsIfAny(phase)).OfType<PhaseCells>().ToArray();
        var faults = Merged<FaultKind>(cells, c => c.Faults, empty);
        var invalidations = Merged<InvalidateCause>(cells, c => c.Invalidations, empty);
        var shootdowns = Merged<ShootdownStep>(cells, c => c.Shootdowns, empty);
        var pages = Enum.GetValues<InvalidateCause>().ToDictionary(c => c, _ => 0L);
        var batches = Merged(cells.Select(c => c.PageOutBatches), empty);
        var swapReads = Merged(cells.Select(c => c.SwapReads), empty);
        long retries = 0, pagedOut = 0;
        foreach (var c in cells)
        {
            for (int i = 0; i < c.InvalidatedPages.Length; i++) pages[(InvalidateCause)i] += Volatile.Read(ref c.InvalidatedPages[i]);
            retries += Volatile.Read(ref c.Retries);
            pagedOut += Volatile.Read(ref c.PagesPagedOut);
        }
        return new PhaseFigures
        {
            Name = name,
            Instructions = instructions,
            WallSeconds = seconds,
            Faults = faults,
            FaultRetries = retries,
            Invalidations = invalidations,
            InvalidatedPages = pages,
            ShootdownWaits = shootdowns,
            PageOutBatches = batches,
            PagesPagedOut = pagedOut,
            SwapReads = swapReads,
        };
    }

    private static PhaseFigures Total(PhaseFigures[] phases)
    {
        var faults = NewSet<FaultKind>();
        var invalidations = NewSet<InvalidateCause>();
        var shootdowns = NewSet<ShootdownStep>();
        var pages = Enum.GetValues<InvalidateCause>().ToDictionary(c => c, _ => 0L);
        var batches = LatencyScale.NewHistogram();
        var swapReads = LatencyScale.NewHistogram();
        foreach (var p in phases)
        {
            foreach (var (k, h) in p.Faults) faults[k].Add(h);
            foreach (var (k, h) in p.Invalidations) invalidations[k].Add(h);
            foreach (var (k, h) in p.ShootdownWaits) shootdowns[k].Add(h);
            foreach (var (k, n) in p.InvalidatedPages) pages[k] += n;
            batches.Add(p.PageOutBatches);
            swapReads.Add(p.SwapReads);
        }
        return new PhaseFigures
        {
            Name = "total",
            Instructions = phases.Sum(p => p.Instructions),
            WallSeconds = phases.Sum(p => p.WallSeconds),
            Faults = faults,
            FaultRetries = phases.Sum(p => p.FaultRetries),
            Invalidations = invalidations,
            InvalidatedPages = pages,
            ShootdownWaits = shootdowns,
            PageOutBatches = batches,
            PagesPagedOut = phases.Sum(p => p.PagesPagedOut),
            SwapReads = swapReads,
        };
    }

    private static Dictionary<T, HistogramBase> NewSet<T>() where T : struct, Enum =>
        Enum.GetValues<T>().ToDictionary(k => k, _ => LatencyScale.NewHistogram());

    /// <summary>Each kind's counts over every recorder, in a histogram up to the highest value any of them holds.</summary>
    private static Dictionary<T, HistogramBase> Merged<T>(PhaseCells[] cells, Func<PhaseCells, LatencyCounts?[]> of, HistogramBase empty) where T : struct, Enum =>
        Enum.GetValues<T>().ToDictionary(k => k, k => Merged(cells.Select(c => Volatile.Read(ref of(c)[Convert.ToInt32(k)])), empty));

    private static HistogramBase Merged(IEnumerable<LatencyCounts?> counts, HistogramBase empty)
    {
        var all = counts.OfType<LatencyCounts>().ToArray();
        // Sized after reading how far each reaches: a count recorded meanwhile beyond it waits for the next snapshot.
        long highest = all.Length == 0 ? 0 : all.Max(c => c.HighestHeld);
        if (highest == 0) return empty;
        var h = LatencyScale.NewHistogram(highest);
        foreach (var c in all) c.AddTo(h, highest);
        return h;
    }

    private TraceData BuildTrace(ThreadRecorder[] recorders, string[] names, int current, long openStart, long openEnd)
    {
        var events = new List<TraceEvent>();
        long dropped = 0;
        foreach (var r in recorders)
        {
            if (r.Ring is not { } ring) continue;
            ring.CopyTo(events);
            dropped += ring.Dropped;
        }
        // The phase still open at the snapshot (or at the end of the run).
        if (openEnd > openStart) events.Add(new TraceEvent(openStart, openEnd, PhaseTrack, TraceKind.Phase, 0, 0, current));
        events.Sort(static (a, b) => a.StartTicks != b.StartTicks ? a.StartTicks.CompareTo(b.StartTicks) : a.EndTicks.CompareTo(b.EndTicks));
        TraceTrack[] tracks;
        lock (_threadsLock) tracks = [.. _tracks];
        return new TraceData
        {
            OriginTicks = OriginTicks,
            Tracks = tracks,
            Events = events,
            Counters = _sampler?.Samples() ?? [],
            PhaseNames = names,
            DroppedEvents = dropped,
        };
    }
}

// Live totals for the meter and a progress line: counts read racily from every
// recorder, no histogram merged.
public sealed partial class MeasurementHub
{
    /// <summary>Running totals, cheap enough to read every second while the VM runs.</summary>
    public LiveFigures Live() => new(
        InstructionsSoFar(),
        FaultCountsSoFar().Sum(),
        InvalidationCountsSoFar().Sum(),
        PagesPagedOutSoFar(),
        SwapReadsSoFar(),
        HostCounterSource?.FreeFrames() ?? 0);

    internal long[] FaultCountsSoFar() => CountsSoFar(KindCount.Faults, static c => c.Faults);

    internal long[] InvalidationCountsSoFar() => CountsSoFar(KindCount.Causes, static c => c.Invalidations);

    internal long PagesPagedOutSoFar() => SumSoFar(static c => Volatile.Read(ref c.PagesPagedOut));

    internal long SwapReadsSoFar() => SumSoFar(static c => Volatile.Read(ref c.SwapReads)?.TotalCount ?? 0);

    private long[] CountsSoFar(int kinds, Func<PhaseCells, LatencyCounts?[]> of)
    {
        var sums = new long[kinds];
        ForEachCells(c =>
        {
            var hs = of(c);
            for (int i = 0; i < kinds; i++) sums[i] += Volatile.Read(ref hs[i])?.TotalCount ?? 0;
        });
        return sums;
    }

    private long SumSoFar(Func<PhaseCells, long> of)
    {
        long sum = 0;
        ForEachCells(c => sum += of(c));
        return sum;
    }

    private void ForEachCells(Action<PhaseCells> visit)
    {
        int phases;
        lock (_phaseLock) phases = _phaseNames.Count;
        foreach (var r in Volatile.Read(ref _recorders))
            for (int p = 0; p < phases; p++)
                if (r.CellsIfAny(p) is { } c) visit(c);
    }
}
