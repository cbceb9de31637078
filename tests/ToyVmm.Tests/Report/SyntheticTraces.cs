using System.Diagnostics;
using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Tests.Report;

/// <summary>A 100 ms timeline with known contents, as the hub's trace recorder would hand it over.</summary>
internal static class SyntheticTraces
{
    public const int Vcpu0 = 0, Vcpu1 = 1, Reclaimer = 2, Driver = 3, SwapIo = 4;
    public const long Origin = 1_000_000;

    public static long T(double microseconds) => Origin + (long)(microseconds * Stopwatch.Frequency / 1e6);

    /// <summary>
    /// Faults every 50 µs on both vCPUs (swap-ins from 20 ms on), a page-out batch every
    /// 5 ms on the driver with its invalidation, shootdown waits and swap write nested
    /// inside, reclaim on the reclaimer, counters every millisecond, phases boot and work,
    /// one violation at 90 ms; plus, when <paramref name="overlap"/>, one slice that
    /// overlaps its neighbour on vCPU 1 only partly.
    /// </summary>
    public static TraceData Hundred(bool overlap = false, long dropped = 0)
    {
        var events = new List<TraceEvent>();
        for (int i = 0; i < 2000; i++)
        {
            double at = i * 50;
            var kind = at < 20_000 ? FaultKind.ZeroFill : i % 4 == 0 ? FaultKind.SwapIn : FaultKind.Present;
            events.Add(new TraceEvent(T(at), T(at + (kind == FaultKind.SwapIn ? 30 : 1.5)), i % 2, TraceKind.Fault, (ulong)(0x100 + i), (ulong)kind, 0));
        }
        for (int b = 0; b < 20; b++)
        {
            double at = b * 5_000 + 1_000;
            events.Add(new TraceEvent(T(at), T(at + 400), Driver, TraceKind.PageOutBatch, 0, 64, 0));
            events.Add(new TraceEvent(T(at + 10), T(at + 60), Driver, TraceKind.Invalidate, (ulong)(0x7f000 + b * 64), 64, (int)InvalidateCause.PageOut));
            events.Add(new TraceEvent(T(at + 20), T(at + 25), Driver, TraceKind.ShootdownWait, 0, 0, (int)ShootdownStep.Acknowledged));
            events.Add(new TraceEvent(T(at + 25), T(at + 25.5), Driver, TraceKind.ShootdownWait, 1, 0, (int)ShootdownStep.NeverHeld));
            events.Add(new TraceEvent(T(at + 100), T(at + 350), SwapIo, TraceKind.SwapWrite, (ulong)(b * 64), 64, 0));
            events.Add(new TraceEvent(T(at + 2_000), T(at + 2_080), Reclaimer, TraceKind.Invalidate, (ulong)(0x80000 + b * 32), 32, (int)InvalidateCause.Reclaim));
        }
        events.Add(new TraceEvent(T(0), T(20_000), Vcpu0, TraceKind.Phase, 0, 0, 0));
        events.Add(new TraceEvent(T(20_000), T(100_000), Vcpu0, TraceKind.Phase, 0, 0, 1));
        events.Add(new TraceEvent(T(90_000), T(90_000), Vcpu1, TraceKind.Violation, 0x123, 0x45, 1));
        if (overlap)   // starts inside the fault at 99_950 µs on vCPU 1 and ends after it
            events.Add(new TraceEvent(T(99_950.5), T(99_960), Vcpu1, TraceKind.ShootdownWait, 0, 0, (int)ShootdownStep.Waited));
        events.Sort((x, y) => x.StartTicks.CompareTo(y.StartTicks));

        var counters = new List<CounterSample>();
        for (int ms = 0; ms <= 100; ms++)
            counters.Add(new CounterSample(T(ms * 1_000), 2000 - ms * 15, 1000 + ms * 30));

        return new TraceData
        {
            OriginTicks = Origin,
            Tracks = [new(Vcpu0, "vCPU 0"), new(Vcpu1, "vCPU 1"), new(Reclaimer, "reclaimer"), new(Driver, "page-out driver"), new(SwapIo, "swap I/O")],
            Events = events,
            Counters = counters,
            PhaseNames = ["boot", "work"],
            DroppedEvents = dropped,
        };
    }
}
