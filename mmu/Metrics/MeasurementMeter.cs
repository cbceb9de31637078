using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace ToyVmm.Mmu.Metrics;

/// <summary>
/// The hub's figures as a System.Diagnostics.Metrics meter named <c>ToyVmm</c>
/// (<c>dotnet-counters monitor -n toyvmm --counters ToyVmm</c>). Counts and the
/// free-frame gauge are observable (read from the hub when a listener collects:
/// nothing on the recording path); the two latency histograms are recorded on
/// the recording path only while a listener has them enabled, with tags made once.
/// </summary>
internal sealed class MeasurementMeter : IDisposable
{
    public const string MeterName = "ToyVmm";

    private static readonly KeyValuePair<string, object?>[] s_kindTags =
        Enum.GetValues<FaultKind>().Select(k => new KeyValuePair<string, object?>("kind", Tag(k.ToString()))).ToArray();
    private static readonly KeyValuePair<string, object?>[] s_causeTags =
        Enum.GetValues<InvalidateCause>().Select(c => new KeyValuePair<string, object?>("cause", Tag(c.ToString()))).ToArray();

    private readonly Histogram<double> _faultLatency;
    private readonly Histogram<double> _invalidationLatency;

    public MeasurementMeter(MeasurementHub hub)
    {
        Meter = new Meter(MeterName);
        Meter.CreateObservableCounter("toyvmm.instructions", hub.InstructionsSoFar, "{instruction}", "Instructions retired by every vCPU");
        Meter.CreateObservableCounter("toyvmm.faults", () => ByTag(hub.FaultCountsSoFar(), s_kindTags), "{fault}", "Secondary faults by how the host answered");
        Meter.CreateObservableCounter("toyvmm.invalidations", () => ByTag(hub.InvalidationCountsSoFar(), s_causeTags), "{invalidation}", "Invalidations by cause");
        Meter.CreateObservableCounter("toyvmm.pageouts", hub.PagesPagedOutSoFar, "{page}", "Pages written to swap or dropped by page-out batches");
        Meter.CreateObservableCounter("toyvmm.swapins", hub.SwapReadsSoFar, "{page}", "Pages read back from swap");
        Meter.CreateObservableGauge("toyvmm.free_frames", () => hub.HostCounterSource is { } s ? [new Measurement<int>(s.FreeFrames())] : Array.Empty<Measurement<int>>(),
            "{frame}", "Free host frames");
        _faultLatency = Meter.CreateHistogram<double>("toyvmm.fault.latency", "us", "Secondary fault latency");
        _invalidationLatency = Meter.CreateHistogram<double>("toyvmm.invalidation.latency", "us", "Invalidation latency, notifier start to end");
    }

    public Meter Meter { get; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void FaultLatency(FaultKind kind, long ns)
    {
        if (_faultLatency.Enabled) _faultLatency.Record(ns / 1000.0, s_kindTags[(int)kind]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void InvalidationLatency(InvalidateCause cause, long ns)
    {
        if (_invalidationLatency.Enabled) _invalidationLatency.Record(ns / 1000.0, s_causeTags[(int)cause]);
    }

    private static Measurement<long>[] ByTag(long[] counts, KeyValuePair<string, object?>[] tags)
    {
        var m = new Measurement<long>[counts.Length];
        for (int i = 0; i < counts.Length; i++) m[i] = new Measurement<long>(counts[i], tags[i]);
        return m;
    }

    /// <summary>The report's spelling of a kind: <c>ZeroFill</c> becomes <c>zeroFill</c>.</summary>
    private static string Tag(string name) => char.ToLowerInvariant(name[0]) + name[1..];

    public void Dispose() => Meter.Dispose();
}
