using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace ToyVmm.Mmu.Metrics;

// Lock order: _phaseLock -> _threadsLock; both are leaves otherwise and are
// never taken on the recording path after a thread's first record.
//   _phaseLock   guards the phase table (names, instructions, wall ticks, the
//                open stretch), the vCPU instruction counters, _ended.
//   _threadsLock guards _recorders and _tracks.
// The recording path reads _phase (volatile) and the thread's own recorder.

/// <summary>
/// The measuring instrument of one VM: latency histograms (HdrHistogram, ns, 3
/// significant digits) of secondary faults by kind, invalidations by cause, TLB
/// shootdown waits by step, page-out batches and swap reads; kept per phase
/// (GUEST-ABI 1.1 PHASE) with each phase's instructions and wall time; an
/// optional bounded timeline (<see cref="TraceLimit"/> &gt; 0); and the
/// <c>ToyVmm</c> meter. The host and the secondary MMU record through
/// <see cref="IMmuEventSink"/>; <see cref="Snapshot"/> merges it all.
/// </summary>
/// <remarks>
/// Every recording thread gets its own <see cref="ThreadRecorder"/> (found through a
/// thread-static cache), so recording takes no lock and allocates nothing in steady
/// state: a thread's first record in a phase allocates its cells, its first record
/// of a kind in a phase allocates that histogram, and a trace ring grows by chunks
/// until the trace budget is spent.
/// </remarks>
public sealed partial class MeasurementHub : IMmuEventSink, IDisposable
{
    /// <summary>Distinct phase names a VM may use; PHASE with a new name beyond them is refused.</summary>
    public const int MaxPhases = 1024;
    public const string BootPhase = "boot";

    // The calling thread's recorder of the hub it last recorded into (it keeps that hub
    // reachable from the thread until the thread records into another one or ends).
    [ThreadStatic] private static ThreadRecorder? t_recorder;

    private volatile int _phase;                                    // index of the current phase

    private readonly Lock _phaseLock = new();
    private readonly List<string> _phaseNames = [BootPhase];        // guarded by _phaseLock
    private readonly Dictionary<string, int> _phaseIndex = new(StringComparer.Ordinal) { [BootPhase] = 0 };  // guarded by _phaseLock
    private readonly List<long> _phaseInstructions = [0];           // guarded by _phaseLock
    private readonly List<long> _phaseTicks = [0];                  // guarded by _phaseLock
    private long _stretchStart;                                     // guarded by _phaseLock: last settle (time before it is counted)
    private long _lastSwitchAt;                                     // guarded by _phaseLock: when the current phase's stretch began
    private Func<long>?[] _vcpuRetired;                             // guarded by _phaseLock: attached vCPUs' retired counters
    private long[] _vcpuCounted;                                    // guarded by _phaseLock: their readings already counted
    private bool _ended;                                            // guarded by _phaseLock

    private readonly Lock _threadsLock = new();
    private ThreadRecorder[] _recorders = [];                       // replaced under _threadsLock, read lock-free
    private readonly List<TraceTrack> _tracks = [];                 // guarded by _threadsLock
    private readonly Dictionary<string, int> _trackIds = new(StringComparer.Ordinal);  // guarded by _threadsLock
    private int[] _vcpuTracks = [];                                 // replaced under _threadsLock, read lock-free
    /// <summary>The track of phase slices: none of the threads' (a writer draws phases on a track of its own).</summary>
    public const int PhaseTrack = -1;

    private long _traceClaimed;                                     // events of the budget handed to rings (interlocked)
    private readonly MeasurementMeter _meter;
    private readonly CounterSampler? _sampler;

    /// <param name="vcpus">vCPUs of the VM (their trace tracks exist from the start).</param>
    /// <param name="traceLimit">Trace events kept over all threads; 0 turns the trace off.</param>
    public MeasurementHub(int vcpus, long traceLimit = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(vcpus);
        ArgumentOutOfRangeException.ThrowIfNegative(traceLimit);
        VcpuCount = vcpus;
        TraceLimit = traceLimit;
        OriginTicks = Stopwatch.GetTimestamp();
        _stretchStart = _lastSwitchAt = OriginTicks;
        _vcpuRetired = new Func<long>?[vcpus];
        _vcpuCounted = new long[vcpus];
        lock (_threadsLock)
        {
            _vcpuTracks = new int[vcpus];
            for (int i = 0; i < vcpus; i++) _vcpuTracks[i] = TrackLocked($"vCPU {i}");
        }
        _meter = new MeasurementMeter(this);
        if (TracingOn) _sampler = new CounterSampler(this);
    }

    public int VcpuCount { get; }

    /// <summary>Trace events kept at most (0: no trace).</summary>
    public long TraceLimit { get; }

    public bool TracingOn => TraceLimit > 0;

    /// <summary>
    /// Events a trace ring claims from the budget at a time: 4096, or a 64th of a small
    /// budget, so that threads that record little do not hold much of it.
    /// </summary>
    public int TraceChunkEvents => (int)Math.Clamp(TraceLimit / 64, 64, 4096);

    /// <summary>When the hub was made: the start of <c>boot</c> and the trace's time origin.</summary>
    public long OriginTicks { get; }

    /// <summary>The <c>ToyVmm</c> meter of this hub (System.Diagnostics.Metrics).</summary>
    public System.Diagnostics.Metrics.Meter Meter => _meter.Meter;

    /// <summary>Name of the current phase.</summary>
    public string CurrentPhase { get { lock (_phaseLock) return _phaseNames[_phase]; } }

    // ---- threads and tracks ------------------------------------------------

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ThreadRecorder Recorder()
    {
        var r = t_recorder;
        if (r is not null && ReferenceEquals(r.Hub, this)) return r;
        return RecorderSlow(null);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private ThreadRecorder RecorderSlow(string? trackName)
    {
        var thread = Thread.CurrentThread;
        lock (_threadsLock)
        {
            ThreadRecorder? r = null;
            foreach (var each in _recorders)
                if (ReferenceEquals(each.Owner, thread)) { r = each; break; }
            if (r is null)
            {
                int track = TrackLocked(trackName ?? TrackNameOfCurrentThread());
                var ring = TracingOn ? new TraceRing(this) : null;
                ring?.Start();
                r = new ThreadRecorder(this, thread, track, ring);
                _recorders = [.. _recorders, r];
            }
            else if (trackName is not null) r.Track = TrackLocked(trackName);
            t_recorder = r;
            return r;
        }
    }

    /// <summary>
    /// Name the calling thread's track (<c>page-out driver</c>, <c>reclaimer</c>, ...).
    /// Threads that never call this are named from their thread name.
    /// </summary>
    public void BindCurrentThread(string trackName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(trackName);
        RecorderSlow(trackName);
    }

    /// <summary>The calling thread is vCPU <paramref name="vcpu"/>: its events go on track <c>vCPU n</c>.</summary>
    public void BindCurrentThreadToVcpu(int vcpu) => RecorderSlow($"vCPU {vcpu}");

    private static string TrackNameOfCurrentThread()
    {
        var name = Thread.CurrentThread.Name;
        return name switch
        {
            "toyvmm-reclaim" => "reclaimer",
            "toyvmm-pageout" => "page-out driver",
            not null when name.StartsWith("vcpu", StringComparison.Ordinal) && int.TryParse(name.AsSpan(4), out int v) => $"vCPU {v}",
            not null => name,
            _ => $"thread {Environment.CurrentManagedThreadId}",
        };
    }

    private int TrackLocked(string name)
    {
        Debug.Assert(_threadsLock.IsHeldByCurrentThread, "tracks are guarded by _threadsLock");
        if (_trackIds.TryGetValue(name, out int id)) return id;
        id = _tracks.Count;
        _tracks.Add(new TraceTrack(id, name));
        _trackIds[name] = id;
        return id;
    }

    private int Track(string name)
    {
        lock (_threadsLock) return TrackLocked(name);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int VcpuTrack(int vcpu, ThreadRecorder r)
    {
        var tracks = _vcpuTracks;
        if ((uint)vcpu < (uint)tracks.Length) return tracks[vcpu];
        return vcpu < 0 ? r.Track : VcpuTrackSlow(vcpu);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private int VcpuTrackSlow(int vcpu)
    {
        lock (_threadsLock)
        {
            var tracks = _vcpuTracks;
            if (vcpu >= tracks.Length)
            {
                var grown = new int[vcpu + 1];
                Array.Copy(tracks, grown, tracks.Length);
                for (int i = tracks.Length; i <= vcpu; i++) grown[i] = TrackLocked($"vCPU {i}");
                Volatile.Write(ref _vcpuTracks, grown);
                tracks = grown;
            }
            return tracks[vcpu];
        }
    }

    /// <summary>Hand a ring up to <paramref name="wanted"/> events of the trace budget; 0 when it is spent.</summary>
    internal int ClaimTraceEvents(int wanted)
    {
        while (true)
        {
            long claimed = Volatile.Read(ref _traceClaimed);
            long n = Math.Min(wanted, TraceLimit - claimed);
            if (n <= 0) return 0;
            if (Interlocked.CompareExchange(ref _traceClaimed, claimed + n, claimed) == claimed) return (int)n;
        }
    }

    // ---- phases and instructions -----------------------------------------------

    /// <summary>
    /// The vCPU's retired-instruction counter, read at every phase switch (from any
    /// thread, racily: a switch counts what the vCPU had retired by about then; a
    /// reading below an earlier one counts nothing).
    /// Detach it before the counter's storage goes away.
    /// </summary>
    public void AttachVcpuCounter(int vcpu, Func<long> retired)
    {
        ArgumentNullException.ThrowIfNull(retired);
        ArgumentOutOfRangeException.ThrowIfNegative(vcpu);
        lock (_phaseLock)
        {
            if (vcpu >= _vcpuRetired.Length)
            {
                Array.Resize(ref _vcpuRetired, vcpu + 1);
                Array.Resize(ref _vcpuCounted, vcpu + 1);
            }
            _vcpuRetired[vcpu] = retired;
            _vcpuCounted[vcpu] = retired();
        }
    }

    /// <summary>Count the vCPU's last instructions into the current phase and stop reading its counter.</summary>
    public void DetachVcpuCounter(int vcpu)
    {
        lock (_phaseLock)
        {
            if ((uint)vcpu >= (uint)_vcpuRetired.Length || _vcpuRetired[vcpu] is null) return;
            SettleLocked();
            _vcpuRetired[vcpu] = null;
        }
    }

    /// <summary>
    /// PHASE: from now on figures are also counted under <paramref name="name"/>
    /// (a name seen before continues). False when the VM already has
    /// <see cref="MaxPhases"/> names and this one is new.
    /// </summary>
    public bool SwitchPhase(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (_phaseLock)
        {
            if (!_phaseIndex.TryGetValue(name, out int next))
            {
                if (_phaseNames.Count >= MaxPhases) return false;
                next = _phaseNames.Count;
                _phaseNames.Add(name);
                _phaseIndex[name] = next;
                _phaseInstructions.Add(0);
                _phaseTicks.Add(0);
            }
            int was = _phase;
            SettleLocked();
            if (TracingOn && !_ended)
                Recorder().Ring!.Add(new TraceEvent(_lastSwitchAt, _stretchStart, PhaseTrack, TraceKind.Phase, 0, 0, was));
            _lastSwitchAt = _stretchStart;
            _phase = next;
            return true;
        }
    }

    /// <summary>
    /// The run is over (every vCPU has stopped): the current phase's clock stops
    /// and the counter sampler ends. Snapshots taken later report the same times.
    /// </summary>
    public void EndRun()
    {
        lock (_phaseLock)
        {
            if (_ended) return;
            SettleLocked();
            _ended = true;
        }
        _sampler?.Stop();
    }

    /// <summary>Count the time and instructions since the last settle into the current phase.</summary>
    private void SettleLocked()
    {
        Debug.Assert(_phaseLock.IsHeldByCurrentThread, "the phase table is guarded by _phaseLock");
        if (_ended) return;   // counted up to the end of the run already
        long now = Stopwatch.GetTimestamp();
        int phase = _phase;
        _phaseTicks[phase] += now - _stretchStart;
        _stretchStart = now;
        for (int v = 0; v < _vcpuRetired.Length; v++)
        {
            if (_vcpuRetired[v] is not { } read) continue;
            // A racy reading can be behind an exact one taken earlier on the vCPU's own
            // thread: count only forward, so no phase ever gets a negative share.
            long r = read();
            if (r <= _vcpuCounted[v]) continue;
            _phaseInstructions[phase] += r - _vcpuCounted[v];
            _vcpuCounted[v] = r;
        }
    }

    /// <summary>Instructions retired by every vCPU so far (the meter).</summary>
    public long InstructionsSoFar()
    {
        lock (_phaseLock)
        {
            SettleLocked();
            long sum = 0;
            foreach (long n in _phaseInstructions) sum += n;
            return sum;
        }
    }

    // ---- host counters -----------------------------------------------------------

    /// <summary>Where the free-frame gauge and the trace's counter samples read the host.</summary>
    public void SetHostCounters(Func<int> freeFrames, Func<long> residentGuestPages)
    {
        ArgumentNullException.ThrowIfNull(freeFrames);
        ArgumentNullException.ThrowIfNull(residentGuestPages);
        Volatile.Write(ref _hostCounters, new HostCounters(freeFrames, residentGuestPages));
        _sampler?.Start();
    }

    internal sealed record HostCounters(Func<int> FreeFrames, Func<long> ResidentGuestPages);
    private HostCounters? _hostCounters;
    internal HostCounters? HostCounterSource => Volatile.Read(ref _hostCounters);

    public void Dispose()
    {
        _sampler?.Stop();
        _meter.Dispose();
    }
}
