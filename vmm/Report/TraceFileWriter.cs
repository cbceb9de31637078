using System.Diagnostics;
using System.Text.Json;
using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Report;

/// <summary>
/// Writes the timeline (<c>--trace PATH</c>) as Chrome trace-event JSON, the "JSON
/// Object Format" that https://ui.perfetto.dev and chrome://tracing open:
/// <code>
/// {"traceEvents":[...], "displayTimeUnit":"ns", "otherData":{...}}
/// </code>
/// One process; one named thread track per <see cref="TraceTrack"/> (<c>vCPU n</c>,
/// <c>reclaimer</c>, <c>page-out driver</c>, <c>swap I/O</c>) plus a <c>phases</c> track;
/// complete events (<c>ph:"X"</c>, ts and dur in microseconds with nanosecond
/// decimals) for faults, invalidations, shootdown waits, page-out batches, swap
/// writes and reads and phases; instants (<c>ph:"i"</c>) for checker violations;
/// counters (<c>ph:"C"</c>) for free frames and resident guest pages. Streamed with
/// <see cref="Utf8JsonWriter"/>: memory stays flat whatever the trace's size.
/// </summary>
/// <remarks>
/// Perfetto requires slices on one track to nest or be disjoint. Events are written
/// by start time (the longer first on a tie, so a parent precedes its child), and a
/// slice that starts inside another on its track but would end after it is clipped
/// to the enclosing slice's end; <c>otherData.clippedSlices</c> says how many were.
/// </remarks>
public static class TraceFileWriter
{
    /// <summary>The pid of the first (in a single-VM run, the only) process.</summary>
    public const int Pid = 1;
    public const string PhasesTrackName = "phases";

    /// <summary>Writes <paramref name="trace"/> to <paramref name="path"/> atomically.</summary>
    /// <exception cref="IOException">The file cannot be written; the message names the path.</exception>
    public static TraceWriteResult Write(TraceData trace, string path, IEnumerable<KeyValuePair<string, string>> settings, string processName = "toyvmm")
    {
        TraceWriteResult result = default;
        AtomicFile.Write(path, stream => result = Write(trace, stream, settings, processName));
        return result;
    }

    /// <summary>Writes <paramref name="trace"/> to <paramref name="stream"/> (left open).</summary>
    public static TraceWriteResult Write(TraceData trace, Stream stream, IEnumerable<KeyValuePair<string, string>> settings, string processName = "toyvmm")
    {
        ArgumentNullException.ThrowIfNull(trace);
        return WriteProcesses([(trace, processName)], stream, settings);
    }

    /// <summary>
    /// Writes several timelines to <paramref name="path"/> atomically, each as its own
    /// process (pid 1, 2, ... in order) on one clock: several VMs of one host, each with
    /// its vCPU tracks, and the host's own threads.
    /// </summary>
    public static TraceWriteResult Write(IReadOnlyList<(TraceData Trace, string ProcessName)> processes, string path, IEnumerable<KeyValuePair<string, string>> settings)
    {
        TraceWriteResult result = default;
        AtomicFile.Write(path, stream => result = WriteProcesses(processes, stream, settings));
        return result;
    }

    private static TraceWriteResult WriteProcesses(IReadOnlyList<(TraceData Trace, string ProcessName)> processes, Stream stream, IEnumerable<KeyValuePair<string, string>> settings)
    {
        var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = false, SkipValidation = false });
        json.WriteStartObject();
        json.WriteString("displayTimeUnit", "ns");
        json.WriteStartArray("traceEvents");
        // One clock for every process, so the VMs' timelines line up.
        var clock = new TraceClock(processes.Count == 0 ? 0 : processes.Min(p => p.Trace.OriginTicks));
        long clipped = 0, written = 0, dropped = 0, samples = 0;
        for (int p = 0; p < processes.Count; p++)
        {
            var (trace, name) = processes[p];
            WriteProcess(json, Pid + p, name, trace, clock, ref written, ref clipped);
            dropped += trace.DroppedEvents;
            samples += trace.Counters.Count;
        }
        json.WriteEndArray();

        json.WriteStartObject("otherData");
        json.WriteString("producer", "toyvmm");
        json.WriteNumber("events", written);
        json.WriteNumber("droppedEvents", dropped);
        json.WriteNumber("clippedSlices", clipped);
        json.WriteNumber("counterSamples", samples);
        var pairs = settings.ToList();
        json.WriteString("settings", string.Join(' ', pairs.Select(kv => $"{kv.Key}={kv.Value}")));
        // Flat keys as well: trace viewers show otherData as a list of name/value strings.
        foreach (var (name, value) in pairs) json.WriteString($"settings.{name}", value);
        json.WriteEndObject();
        json.WriteEndObject();
        json.Flush();
        return new TraceWriteResult(written, clipped, dropped);
    }

    private static void WriteProcess(Utf8JsonWriter json, int pid, string processName, TraceData trace, TraceClock clock, ref long written, ref long clipped)
    {
        int phasesTrack = trace.Tracks.Count == 0 ? 0 : trace.Tracks.Max(t => t.Id) + 1;
        Metadata(json, pid, "process_name", null, processName);
        int sort = 0;
        foreach (var track in trace.Tracks)
        {
            Metadata(json, pid, "thread_name", track.Id, track.Name);
            SortIndex(json, pid, track.Id, sort++);
        }
        Metadata(json, pid, "thread_name", phasesTrack, PhasesTrackName);
        SortIndex(json, pid, phasesTrack, -1);     // phases on top

        var open = new Dictionary<int, Stack<long>>();   // track -> ends of the slices still open on it
        foreach (int i in InWritingOrder(trace.Events))
        {
            var e = trace.Events[i];
            int tid = e.Kind == TraceKind.Phase ? phasesTrack : e.Track;
            if (e.Kind == TraceKind.Violation)
            {
                Instant(json, pid, clock, e, tid);
                written++;
                continue;
            }
            long end = Math.Max(e.StartTicks, e.EndTicks);
            if (!open.TryGetValue(tid, out var ends)) open[tid] = ends = new Stack<long>();
            while (ends.Count > 0 && ends.Peek() <= e.StartTicks) ends.Pop();
            if (ends.Count > 0 && end > ends.Peek()) { end = ends.Peek(); clipped++; }
            ends.Push(end);
            Slice(json, pid, clock, e, tid, end, trace.PhaseNames);
            written++;
            if (json.BytesPending > 1 << 16) json.Flush();
        }

        foreach (var c in trace.Counters)
        {
            decimal ts = TraceClock.Micro(clock.Nanoseconds(c.Ticks));
            Counter(json, pid, ts, "free frames", "frames", c.FreeFrames);
            Counter(json, pid, ts, "resident guest pages", "pages", c.ResidentGuestPages);
            if (json.BytesPending > 1 << 16) json.Flush();
        }
    }

    /// <summary>Event indices by start time, the longer slice first on a tie (so parents precede children).</summary>
    private static int[] InWritingOrder(IReadOnlyList<TraceEvent> events)
    {
        var order = new int[events.Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        Array.Sort(order, (a, b) =>
        {
            var x = events[a];
            var y = events[b];
            int c = x.StartTicks.CompareTo(y.StartTicks);
            if (c != 0) return c;
            c = y.EndTicks.CompareTo(x.EndTicks);
            return c != 0 ? c : a.CompareTo(b);
        });
        return order;
    }

    private static void Metadata(Utf8JsonWriter json, int pid, string name, int? tid, string value)
    {
        json.WriteStartObject();
        json.WriteString("name", name);
        json.WriteString("ph", "M");
        json.WriteNumber("pid", pid);
        if (tid is { } t) json.WriteNumber("tid", t);
        json.WriteStartObject("args");
        json.WriteString("name", value);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    private static void SortIndex(Utf8JsonWriter json, int pid, int tid, int index)
    {
        json.WriteStartObject();
        json.WriteString("name", "thread_sort_index");
        json.WriteString("ph", "M");
        json.WriteNumber("pid", pid);
        json.WriteNumber("tid", tid);
        json.WriteStartObject("args");
        json.WriteNumber("sort_index", index);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    private static void Slice(Utf8JsonWriter json, int pid, TraceClock clock, TraceEvent e, int tid, long endTicks, IReadOnlyList<string> phaseNames)
    {
        json.WriteStartObject();
        json.WriteString("name", SliceName(e, phaseNames));
        json.WriteString("cat", Category(e.Kind));
        json.WriteString("ph", "X");
        json.WriteNumber("pid", pid);
        json.WriteNumber("tid", tid);
        // Whole nanoseconds, written as exact decimals of microseconds: a child clipped to
        // its parent's end in ticks cannot end after it by a rounding error.
        long start = clock.Nanoseconds(e.StartTicks);
        json.WriteNumber("ts", TraceClock.Micro(start));
        json.WriteNumber("dur", TraceClock.Micro(Math.Max(0, clock.Nanoseconds(endTicks) - start)));
        json.WriteStartObject("args");
        Args(json, e);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    private static void Instant(Utf8JsonWriter json, int pid, TraceClock clock, TraceEvent e, int tid)
    {
        json.WriteStartObject();
        json.WriteString("name", "invariant violation");
        json.WriteString("cat", Category(e.Kind));
        json.WriteString("ph", "i");
        json.WriteString("s", "g");           // global: a line across every track, the moment the checker fired
        json.WriteNumber("pid", pid);
        json.WriteNumber("tid", tid);
        json.WriteNumber("ts", TraceClock.Micro(clock.Nanoseconds(e.StartTicks)));
        json.WriteStartObject("args");
        Args(json, e);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    private static void Counter(Utf8JsonWriter json, int pid, decimal ts, string name, string series, long value)
    {
        json.WriteStartObject();
        json.WriteString("name", name);
        json.WriteString("ph", "C");
        json.WriteNumber("pid", pid);
        json.WriteNumber("ts", ts);
        json.WriteStartObject("args");
        json.WriteNumber(series, value);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    internal static string SliceName(TraceEvent e, IReadOnlyList<string> phaseNames) => e.Kind switch
    {
        TraceKind.Fault => $"fault: {ReportNames.Words((FaultKind)e.B)}",
        TraceKind.Invalidate => $"invalidate: {ReportNames.Words((InvalidateCause)e.C)}",
        TraceKind.ShootdownWait => $"shootdown wait: vCPU {e.A}",
        TraceKind.PageOutBatch => "page-out batch",
        TraceKind.SwapWrite => "swap write",
        TraceKind.SwapRead => "swap read",
        TraceKind.Phase => (uint)e.C < (uint)phaseNames.Count ? phaseNames[e.C] : $"phase {e.C}",
        _ => e.Kind.ToString(),
    };

    private static string Category(TraceKind kind) => kind switch
    {
        TraceKind.Fault => "fault",
        TraceKind.Invalidate => "invalidate",
        TraceKind.ShootdownWait => "shootdown",
        TraceKind.PageOutBatch => "pageout",
        TraceKind.SwapWrite or TraceKind.SwapRead => "swap",
        TraceKind.Phase => "phase",
        TraceKind.Violation => "checker",
        _ => "other",
    };

    private static void Args(Utf8JsonWriter json, TraceEvent e)
    {
        switch (e.Kind)
        {
            case TraceKind.Fault:
                json.WriteString("kind", ReportNames.Of((FaultKind)e.B));
                json.WriteString("gpa", Hex(e.A << 12));
                break;
            case TraceKind.Invalidate:
                json.WriteString("cause", ReportNames.Of((InvalidateCause)e.C));
                json.WriteString("hva", Hex(e.A << 12));
                json.WriteString("range", $"{Hex(e.A << 12)}-{Hex(((e.A + Math.Max(1, e.B)) << 12) - 1)}");
                json.WriteNumber("pages", e.B);
                break;
            case TraceKind.ShootdownWait:
                json.WriteNumber("vcpu", e.A);
                json.WriteString("step", ReportNames.Of((ShootdownStep)e.C));
                break;
            case TraceKind.PageOutBatch:
                json.WriteNumber("pages", e.B);
                break;
            case TraceKind.SwapWrite:
            case TraceKind.SwapRead:
                json.WriteNumber("slot", e.A);
                json.WriteNumber("pages", e.B);
                break;
            case TraceKind.Phase:
                json.WriteNumber("index", e.C);
                break;
            case TraceKind.Violation:
                json.WriteString("gpa", Hex(e.A << 12));
                json.WriteString("hfn", Hex(e.B));
                if (e.C >= 0) json.WriteNumber("vcpu", e.C);
                break;
        }
    }

    private static string Hex(ulong v) => $"0x{v:x}";

    /// <summary>Stopwatch ticks since the trace's origin in whole nanoseconds (monotonic in the ticks).</summary>
    private readonly struct TraceClock(long origin)
    {
        private static readonly double NanosPerTick = 1e9 / Stopwatch.Frequency;
        public long Nanoseconds(long ticks) => (long)Math.Round((ticks - origin) * NanosPerTick);
        /// <summary>Nanoseconds as microseconds with exactly the decimals needed (<c>12.345</c>, <c>12</c>).</summary>
        public static decimal Micro(long ns) => ns / 1000m;
    }
}

/// <summary>What <see cref="TraceFileWriter.Write(TraceData, string, IEnumerable{KeyValuePair{string, string}}, string)"/> wrote.</summary>
public readonly record struct TraceWriteResult(long Events, long ClippedSlices, long DroppedEvents);
