using System.Diagnostics;

namespace ToyVmm.Mmu.Metrics;

// Lock: _lock guards _samples; taken by the timer callback and by Samples().

/// <summary>
/// The trace's counter tracks: every <see cref="IntervalMs"/> while the VM runs,
/// the host's free frames and the resident guest pages. Runs on a timer from
/// <see cref="MeasurementHub.SetHostCounters"/> until <see cref="MeasurementHub.EndRun"/>,
/// keeping at most <see cref="MaxSamples"/> (an hour at 10 ms).
/// </summary>
internal sealed class CounterSampler(MeasurementHub hub)
{
    public const int IntervalMs = 10;
    public const int MaxSamples = 360_000;

    private readonly Lock _lock = new();
    private readonly List<CounterSample> _samples = [];   // guarded by _lock
    private Timer? _timer;                                // guarded by _lock
    private bool _stopped;                                // guarded by _lock

    public void Start()
    {
        lock (_lock)
        {
            if (_timer is not null || _stopped) return;
            _timer = new Timer(_ => Sample(), null, 0, IntervalMs);
        }
    }

    public void Stop()
    {
        lock (_lock)
        {
            if (_stopped) return;
            _stopped = true;
            _timer?.Dispose();
            _timer = null;
        }
        Sample(force: true);   // the state at the end of the run
    }

    private void Sample(bool force = false)
    {
        if (hub.HostCounterSource is not { } source) return;
        CounterSample sample;
        try
        {
            sample = new CounterSample(Stopwatch.GetTimestamp(), source.FreeFrames(), source.ResidentGuestPages());
        }
        catch (ObjectDisposedException)
        {
            return;   // the host went away first
        }
        lock (_lock)
        {
            if ((_stopped && !force) || _samples.Count >= MaxSamples) return;
            _samples.Add(sample);
        }
    }

    public CounterSample[] Samples()
    {
        lock (_lock) return [.. _samples];
    }
}
