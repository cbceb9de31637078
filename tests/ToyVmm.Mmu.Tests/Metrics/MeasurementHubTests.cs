using System.Diagnostics;
using System.Diagnostics.Metrics;
using HdrHistogram;
using ToyVmm.Mmu.Metrics;
using Xunit;

namespace ToyVmm.Mmu.Tests.Metrics;

public class MeasurementHubTests
{
    /// <summary>Ticks that convert to exactly <paramref name="ns"/> nanoseconds (where ticks are ns) or close to it.</summary>
    private static long Ticks(long ns) => (long)Math.Round(ns * (Stopwatch.Frequency / 1e9));

    private static void OnThread(Action work)
    {
        var t = new Thread(() => work());
        t.Start();
        t.Join();
    }

    [Fact]
    public void Snapshot_KnownValuesFromTwoThreads_MergesExactlyAtThreeDigits()
    {
        using var hub = new MeasurementHub(vcpus: 2);
        // vCPU 0 records 1..500 µs, vCPU 1 records 501..1000 µs, each on its own thread.
        OnThread(() => { for (long us = 1; us <= 500; us++) hub.FaultCompleted(0, (ulong)us, FaultKind.ZeroFill, 0, Ticks(us * 1000)); });
        OnThread(() => { for (long us = 501; us <= 1000; us++) hub.FaultCompleted(1, (ulong)us, FaultKind.ZeroFill, 0, Ticks(us * 1000)); });

        var h = hub.Snapshot().Total.Faults[FaultKind.ZeroFill];
        Assert.Equal(1000, h.TotalCount);
        long p50 = h.GetValueAtPercentile(50);
        Assert.InRange(p50, 500_000 - 500, 500_000 + 500);            // 3 significant digits: within 0.1%
        Assert.InRange(h.GetMaxValue(), 1_000_000 - 1000, 1_000_000 + 1000);
        Assert.Equal(h.GetValueAtPercentile(50), h.Copy().GetValueAtPercentile(50));
        Assert.Equal(0, hub.Snapshot().Total.Faults[FaultKind.SwapIn].TotalCount);
    }

    [Fact]
    public void Snapshot_EveryKind_CountsAddUpAcrossPhasesAndTotal()
    {
        using var hub = new MeasurementHub(vcpus: 1);
        hub.FaultCompleted(0, 1, FaultKind.Present, 0, Ticks(100));
        hub.FaultRetried(0);
        hub.InvalidateCompleted(InvalidateCause.PageOut, 10, 4, 0, Ticks(2000));
        Assert.True(hub.SwitchPhase("work"));
        hub.FaultCompleted(0, 2, FaultKind.SwapIn, 0, Ticks(50_000));
        hub.InvalidateCompleted(InvalidateCause.Reclaim, 11, 1, 0, Ticks(3000));
        hub.InvalidateCompleted(InvalidateCause.PageOut, 12, 2, 0, Ticks(3000));
        hub.ShootdownCompleted(0, ShootdownStep.Waited, 0, Ticks(700));
        hub.PageOutBatch(64, 0, Ticks(90_000));
        hub.SwapRead(7, 0, Ticks(40_000));
        hub.SwapWritten(8, 64, 0, Ticks(80_000));

        var s = hub.Snapshot();
        Assert.Equal(["boot", "work"], s.Phases.Select(p => p.Name));
        var boot = s.Phases[0];
        var work = s.Phases[1];
        Assert.Equal(1, boot.Faults[FaultKind.Present].TotalCount);
        Assert.Equal(1, boot.FaultRetries);
        Assert.Equal(4, boot.InvalidatedPages[InvalidateCause.PageOut]);
        Assert.Equal(1, work.Faults[FaultKind.SwapIn].TotalCount);
        Assert.Equal(0, work.Faults[FaultKind.Present].TotalCount);
        Assert.Equal(1, work.Invalidations[InvalidateCause.Reclaim].TotalCount);
        Assert.Equal(2, work.InvalidatedPages[InvalidateCause.PageOut]);
        Assert.Equal(1, work.ShootdownWaits[ShootdownStep.Waited].TotalCount);
        Assert.Equal(1, work.PageOutBatches.TotalCount);
        Assert.Equal(64, work.PagesPagedOut);
        Assert.Equal(1, work.SwapReads.TotalCount);

        Assert.Equal("total", s.Total.Name);
        Assert.Equal(2, s.Total.Invalidations[InvalidateCause.PageOut].TotalCount);
        Assert.Equal(6, s.Total.InvalidatedPages[InvalidateCause.PageOut]);
        Assert.Equal(2, s.Total.Faults.Values.Sum(h => h.TotalCount));
        Assert.Equal(1, s.ShootdownCounts[ShootdownStep.Waited]);
        Assert.Equal(0, s.ShootdownCounts[ShootdownStep.NeverHeld]);
        Assert.Null(s.Trace);
    }

    [Fact]
    public void SwitchPhase_NameAgain_ContinuesIt()
    {
        using var hub = new MeasurementHub(vcpus: 1);
        hub.SwitchPhase("fill");
        hub.FaultCompleted(0, 1, FaultKind.ZeroFill, 0, 1);
        hub.SwitchPhase("verify");
        hub.FaultCompleted(0, 1, FaultKind.SwapIn, 0, 1);
        hub.SwitchPhase("fill");
        hub.FaultCompleted(0, 2, FaultKind.ZeroFill, 0, 1);
        Assert.Equal("fill", hub.CurrentPhase);

        var s = hub.Snapshot();
        Assert.Equal(["boot", "fill", "verify"], s.Phases.Select(p => p.Name));
        Assert.Equal(2, s.Phases[1].Faults[FaultKind.ZeroFill].TotalCount);
        Assert.Equal(1, s.Phases[2].Faults[FaultKind.SwapIn].TotalCount);
        Assert.Equal(s.Total.WallSeconds, s.Phases.Sum(p => p.WallSeconds), 9);
    }

    [Fact]
    public void SwitchPhase_MoreNamesThanTheLimit_RefusesNewOnesOnly()
    {
        using var hub = new MeasurementHub(vcpus: 1);
        for (int i = 1; i < MeasurementHub.MaxPhases; i++) Assert.True(hub.SwitchPhase($"p{i}"));
        Assert.False(hub.SwitchPhase("one too many"));
        Assert.True(hub.SwitchPhase("p1"));
        Assert.Equal(MeasurementHub.MaxPhases, hub.Snapshot().Phases.Count);
    }

    /// <summary>
    /// A guest that declares every phase it may and faults once in each costs the VMM a few KiB a
    /// phase for the counts, not the whole 1 ns to 60 s range (221 KiB) per kind, thread and phase.
    /// </summary>
    [Fact]
    public void SwitchPhase_EveryPhaseWithOneFaultOfTwoKinds_CostsAFewKiBAPhase()
    {
        using var hub = new MeasurementHub(vcpus: 1);
        hub.FaultCompleted(0, 1, FaultKind.Present, 0, 150);   // this thread's recorder and the boot phase's cells
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 1; i < MeasurementHub.MaxPhases; i++)
        {
            Assert.True(hub.SwitchPhase($"p{i}"));
            hub.FaultCompleted(0, 1, FaultKind.Present, 0, 150);
            hub.FaultCompleted(0, 1, FaultKind.ZeroFill, 0, 400);
        }
        long perPhase = (GC.GetAllocatedBytesForCurrentThread() - before) / (MeasurementHub.MaxPhases - 1);
        Assert.InRange(perPhase, 2 * 8 * 1024, 24 * 1024);   // a block of counts per kind, the cells and the phase's name
        before = GC.GetAllocatedBytesForCurrentThread();
        var s = hub.Snapshot();
        long snapshot = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(MeasurementHub.MaxPhases, s.Phases.Count);
        Assert.Equal(MeasurementHub.MaxPhases, s.Total.Faults[FaultKind.Present].TotalCount);
        Assert.Equal(150, s.Phases[7].Faults[FaultKind.Present].GetMaxValue());
        Assert.Equal(400, s.Phases[7].Faults[FaultKind.ZeroFill].GetValueAtPercentile(50));
        // The snapshot's histograms span what each phase holds: full-range ones (221 KiB each, for
        // every kind of every phase) took 3.6 GB here.
        Assert.True(snapshot < 64L << 20, $"the snapshot of {MeasurementHub.MaxPhases} phases allocated {snapshot >> 20} MiB");
    }

    [Fact]
    public void Instructions_CountedPerPhaseFromTheVcpuCounters()
    {
        using var hub = new MeasurementHub(vcpus: 2);
        long a = 0, b = 0;
        hub.AttachVcpuCounter(0, () => Volatile.Read(ref a));
        hub.AttachVcpuCounter(1, () => Volatile.Read(ref b));
        a = 100; b = 10;
        hub.SwitchPhase("one");
        a = 250; b = 30;
        hub.DetachVcpuCounter(1);
        b = 1_000_000;                       // detached: no longer read
        hub.SwitchPhase("two");
        a = 260;
        hub.EndRun();
        a = 999;                             // after the end: not counted

        var s = hub.Snapshot();
        Assert.Equal([110L, 170L, 10L], s.Phases.Select(p => p.Instructions));
        Assert.Equal(290, s.Total.Instructions);
        double wall = s.Total.WallSeconds;
        Thread.Sleep(20);
        Assert.Equal(wall, hub.Snapshot().Total.WallSeconds);   // the clock stopped at EndRun
    }

    [Fact]
    public void Trace_Off_CostsNoRingAndSnapshotHasNone()
    {
        using var hub = new MeasurementHub(vcpus: 1, traceLimit: 0);
        hub.FaultCompleted(0, 1, FaultKind.Present, 0, 1);
        Assert.False(hub.TracingOn);
        Assert.Null(hub.Snapshot().Trace);
    }

    [Fact]
    public void Trace_MoreEventsThanTheLimit_KeepsAtMostTheLimitAndCountsDrops()
    {
        const int limit = 4096 + 1000;      // the chunk is 4096 from a budget of 262144 up, a 64th below
        const int perThread = 3 * 4096;
        int[] counts = [100, perThread, perThread];
        using var hub = new MeasurementHub(vcpus: 3, traceLimit: limit);
        Assert.Equal(limit / 64, hub.TraceChunkEvents);
        // One after the other, so the budget goes in order: vCPU 0 keeps its 100,
        // vCPU 1 takes the rest and wraps, vCPU 2 gets nothing.
        for (int v = 0; v < 3; v++)
        {
            int vcpu = v;
            OnThread(() =>
            {
                for (int i = 0; i < counts[vcpu]; i++)
                {
                    long t = Stopwatch.GetTimestamp();
                    hub.FaultCompleted(vcpu, (ulong)i, FaultKind.Present, t, t + 1);
                }
            });
        }

        var trace = hub.Snapshot().Trace!;
        var faults = trace.Events.Where(e => e.Kind == TraceKind.Fault).ToList();
        Assert.True(trace.Events.Count <= limit, $"{trace.Events.Count} events kept");
        Assert.Equal(counts.Sum(), faults.Count + trace.DroppedEvents);
        Assert.Equal(100, faults.Count(e => e.C == 0));
        // The oldest are dropped: vCPU 1's ring kept its newest events.
        var kept1 = faults.Where(e => e.C == 1).Select(e => e.A).Order().ToList();
        Assert.True(kept1.Count > limit / 2, $"{kept1.Count} kept");
        Assert.Equal(Enumerable.Range(perThread - kept1.Count, kept1.Count).Select(i => (ulong)i), kept1);
        Assert.DoesNotContain(faults, e => e.C == 2);
        for (int i = 1; i < trace.Events.Count; i++) Assert.True(trace.Events[i - 1].StartTicks <= trace.Events[i].StartTicks);
    }

    [Fact]
    public void Trace_Tracks_NamedForVcpusRolesAndSwapIo()
    {
        using var hub = new MeasurementHub(vcpus: 2, traceLimit: 10_000);
        OnThread(() =>
        {
            hub.BindCurrentThread("page-out driver");
            hub.PageOutBatch(8, 10, 20);
            hub.SwapWritten(0, 8, 11, 19);
            hub.InvalidateCompleted(InvalidateCause.PageOut, 100, 8, 10, 15);
            hub.ShootdownCompleted(1, ShootdownStep.ShotDown, 11, 12);
        });
        var reclaimer = new Thread(() => hub.PageOutBatch(4, 30, 40)) { Name = "toyvmm-reclaim" };
        reclaimer.Start(); reclaimer.Join();
        OnThread(() => { hub.FaultCompleted(1, 5, FaultKind.SwapIn, 50, 60); hub.SwapRead(3, 51, 59); hub.Violation(5, 9, 1); });
        hub.SwitchPhase("work");

        var trace = hub.Snapshot().Trace!;
        string TrackOf(TraceKind k) => trace.Tracks[trace.Events.First(e => e.Kind == k).Track].Name;
        Assert.Contains(trace.Tracks, t => t.Name == "vCPU 0");
        Assert.Equal("page-out driver", trace.Events.Where(e => e.Kind == TraceKind.PageOutBatch && e.B == 8).Select(e => trace.Tracks[e.Track].Name).Single());
        Assert.Equal("reclaimer", trace.Events.Where(e => e.Kind == TraceKind.PageOutBatch && e.B == 4).Select(e => trace.Tracks[e.Track].Name).Single());
        Assert.Equal("swap I/O", TrackOf(TraceKind.SwapWrite));
        Assert.Equal("swap I/O", TrackOf(TraceKind.SwapRead));
        Assert.Equal("page-out driver", TrackOf(TraceKind.Invalidate));
        Assert.Equal("vCPU 1", TrackOf(TraceKind.Fault));
        Assert.Equal("vCPU 1", TrackOf(TraceKind.Violation));
        var violation = trace.Events.Single(e => e.Kind == TraceKind.Violation);
        Assert.Equal(violation.StartTicks, violation.EndTicks);
        var phases = trace.Events.Where(e => e.Kind == TraceKind.Phase).ToList();
        Assert.Equal(["boot", "work"], phases.Select(p => trace.PhaseNames[p.C]));
        Assert.All(phases, p => Assert.Equal(MeasurementHub.PhaseTrack, p.Track));
        Assert.DoesNotContain(trace.Tracks, t => t.Id == MeasurementHub.PhaseTrack);
        Assert.Equal(phases[0].EndTicks, phases[1].StartTicks);
        Assert.Equal(0, trace.DroppedEvents);
    }

    [Fact]
    public void Trace_CounterSamples_TakenWhileRunningAndAtTheEnd()
    {
        using var hub = new MeasurementHub(vcpus: 1, traceLimit: 100);
        int free = 7;
        hub.SetHostCounters(() => Volatile.Read(ref free), () => 3);
        var until = Stopwatch.StartNew();
        while (hub.Snapshot().Trace!.Counters.Count == 0 && until.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(5);
        Volatile.Write(ref free, 5);
        hub.EndRun();
        var counters = hub.Snapshot().Trace!.Counters;
        Assert.True(counters.Count >= 2);
        Assert.Equal(7, counters[0].FreeFrames);
        Assert.Equal(5, counters[^1].FreeFrames);
        Assert.All(counters, c => Assert.Equal(3, c.ResidentGuestPages));
    }

    [Fact]
    public void Meter_PublishesCountsGaugeAndLatencies()
    {
        using var hub = new MeasurementHub(vcpus: 1);
        long retired = 1234;
        hub.AttachVcpuCounter(0, () => retired);
        hub.SetHostCounters(() => 42, () => 0);
        var longs = new List<(string Name, long Value, string? Tag)>();
        var ints = new List<(string Name, int Value)>();
        var doubles = new List<(string Name, double Value, string? Tag)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, hub.Meter)) l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((i, v, tags, _) => longs.Add((i.Name, v, tags.Length > 0 ? tags[0].Value as string : null)));
        listener.SetMeasurementEventCallback<int>((i, v, _, _) => ints.Add((i.Name, v)));
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => doubles.Add((i.Name, v, tags.Length > 0 ? tags[0].Value as string : null)));
        listener.Start();

        Assert.Equal("ToyVmm", hub.Meter.Name);
        retired = 5000;
        hub.FaultCompleted(0, 1, FaultKind.ZeroFill, 0, Ticks(3000));
        hub.FaultCompleted(0, 2, FaultKind.ZeroFill, 0, Ticks(3000));
        hub.InvalidateCompleted(InvalidateCause.Discard, 0, 1, 0, Ticks(1000));
        hub.PageOutBatch(16, 0, 1);
        hub.SwapRead(1, 0, 1);
        listener.RecordObservableInstruments();

        Assert.Contains(("toyvmm.instructions", 3766L, (string?)null), longs);   // 5000 - 1234 since attach
        Assert.Contains(("toyvmm.faults", 2L, (string?)"zeroFill"), longs);
        Assert.Contains(("toyvmm.faults", 0L, (string?)"swapIn"), longs);
        Assert.Contains(("toyvmm.invalidations", 1L, (string?)"discard"), longs);
        Assert.Contains(("toyvmm.pageouts", 16L, (string?)null), longs);
        Assert.Contains(("toyvmm.swapins", 1L, (string?)null), longs);
        Assert.Contains(("toyvmm.free_frames", 42), ints);
        Assert.Equal(2, doubles.Count(d => d.Name == "toyvmm.fault.latency" && d.Tag == "zeroFill"));
        Assert.Contains(doubles, d => d.Name == "toyvmm.invalidation.latency" && d.Tag == "discard");
        Assert.All(doubles.Where(d => d.Name == "toyvmm.fault.latency"), d => Assert.InRange(d.Value, 2.9, 3.1));
        Assert.Equal(new LiveFigures(3766, 2, 1, 16, 1, 42), hub.Live());
    }

    [Fact]
    public void LatencyScale_LongerThanTrackable_IsClampedNotThrown()
    {
        using var hub = new MeasurementHub(vcpus: 1);
        hub.FaultCompleted(0, 1, FaultKind.Present, 0, long.MaxValue / 2);
        hub.FaultCompleted(0, 1, FaultKind.Present, 10, 0);   // a clock that went backwards
        HistogramBase h = hub.Snapshot().Total.Faults[FaultKind.Present];
        Assert.Equal(2, h.TotalCount);
        Assert.True(h.GetMaxValue() >= LatencyScale.HighestTrackableNs);
    }
}
