using System.Globalization;

namespace ToyVmm.Report;

/// <summary>The live figures the progress line reads once a second (totals since the start; it takes the differences).</summary>
/// <param name="Instructions">Instructions retired by every vCPU so far.</param>
/// <param name="Faults">Secondary faults so far, every kind.</param>
/// <param name="Invalidations">Invalidations so far, every cause.</param>
/// <param name="PageOuts">Pages written to swap so far.</param>
/// <param name="FreeFrames">Host frames free now.</param>
public readonly record struct LiveCounters(long Instructions, long Faults, long Invalidations, long PageOuts, long FreeFrames);

/// <summary>
/// The progress line on standard error while a run goes on, rewritten in place once a second:
/// <code>
///  3.0s  412 MIPS  faults 12.3k/s  inval 1.1k/s  pageouts 640/s  free 1.2k frames
/// </code>
/// Rates are over the last interval. <see cref="Dispose"/> stops it and clears the
/// line, so the end-of-run table starts on a clean line. Start it with
/// <see cref="StartIfTerminal"/>: off with <c>--quiet</c> and when standard error is
/// not a terminal (a log file must not fill with carriage returns).
/// </summary>
/// <remarks>
/// Lock: <c>_lock</c> orders the timer's ticks against <see cref="Dispose"/>; the counter
/// delegate is called under it (it must only read counters, never block).
/// </remarks>
public sealed class ProgressLine : IDisposable
{
    private readonly Func<LiveCounters> _read;
    private readonly TextWriter _writer;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private readonly long _started;
    private ITimer? _timer;              // guarded by _lock
    private LiveCounters _last;          // guarded by _lock
    private long _lastAt;                // guarded by _lock
    private int _shown;                  // guarded by _lock: characters of the line now on screen
    private bool _stopped;               // guarded by _lock

    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    /// <param name="read">Reads the live counters; called once a second on a timer thread.</param>
    /// <param name="writer">Where the line goes (standard error).</param>
    /// <param name="time">The clock and timer (<see cref="TimeProvider.System"/>; a fake one in tests).</param>
    public ProgressLine(Func<LiveCounters> read, TextWriter writer, TimeProvider time)
    {
        _read = read ?? throw new ArgumentNullException(nameof(read));
        _writer = writer ?? throw new ArgumentNullException(nameof(writer));
        _time = time ?? throw new ArgumentNullException(nameof(time));
        _started = _lastAt = time.GetTimestamp();
        _last = read();
    }

    /// <summary>
    /// A running progress line on standard error, or null when <paramref name="quiet"/>
    /// or when standard error is redirected (not a terminal).
    /// </summary>
    public static ProgressLine? StartIfTerminal(Func<LiveCounters> read, bool quiet)
    {
        if (quiet || Console.IsErrorRedirected) return null;
        var line = new ProgressLine(read, Console.Error, TimeProvider.System);
        line.Start();
        return line;
    }

    /// <summary>Starts writing once per <see cref="Interval"/>.</summary>
    public void Start()
    {
        lock (_lock)
        {
            if (_stopped || _timer is not null) return;
            _timer = _time.CreateTimer(_ => Tick(), null, Interval, Interval);
        }
    }

    /// <summary>Writes the line now (the timer calls this; tests may too).</summary>
    public void Tick()
    {
        lock (_lock)
        {
            if (_stopped) return;
            long now = _time.GetTimestamp();
            var c = _read();
            double seconds = _time.GetElapsedTime(_lastAt, now).TotalSeconds;
            string line = Format(_time.GetElapsedTime(_started, now), c, _last, seconds);
            _last = c;
            _lastAt = now;
            // Pad over what the previous, longer line left on screen.
            _writer.Write('\r' + line.PadRight(_shown));
            _writer.Flush();
            _shown = line.Length;
        }
    }

    /// <summary>Stops the line and clears it from the screen.</summary>
    public void Dispose()
    {
        ITimer? timer;
        lock (_lock)
        {
            if (_stopped) return;
            _stopped = true;
            timer = _timer;
            _timer = null;
            if (_shown > 0)
            {
                _writer.Write('\r' + new string(' ', _shown) + '\r');
                _writer.Flush();
                _shown = 0;
            }
        }
        timer?.Dispose();
    }

    /// <summary>The line for counters <paramref name="now"/> after <paramref name="before"/>, <paramref name="seconds"/> apart.</summary>
    public static string Format(TimeSpan elapsed, LiveCounters now, LiveCounters before, double seconds)
    {
        double Rate(long a, long b) => seconds > 0 ? Math.Max(0, a - b) / seconds : 0;
        double mips = Rate(now.Instructions, before.Instructions) / 1e6;
        return string.Create(CultureInfo.InvariantCulture,
            $" {elapsed.TotalSeconds:0.0}s  {(mips < 10 ? mips.ToString("0.0", CultureInfo.InvariantCulture) : Math.Round(mips).ToString(CultureInfo.InvariantCulture))} MIPS"
            + $"  faults {Units.Short(Rate(now.Faults, before.Faults))}/s"
            + $"  inval {Units.Short(Rate(now.Invalidations, before.Invalidations))}/s"
            + $"  pageouts {Units.Short(Rate(now.PageOuts, before.PageOuts))}/s"
            + $"  free {Units.Short(now.FreeFrames)} frames");
    }
}
