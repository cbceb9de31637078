using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Vm;

// Threads: one dedicated thread runs every schedule (see the class remarks for
// why one); Start, Stop and the counters are called from others. The counters
// are interlocked; the schedules' state (_runs) belongs to the driver thread
// alone after Start.

/// <summary>
/// Forces host page-outs while the guest runs, as the <c>--pageout</c> schedules
/// say: periodic page-outs, one-time bursts, and shrinks of the host's frame pool
/// that leave the paging-out to reclaim. Every random choice comes from a
/// <see cref="Random"/> seeded from the run's seed, one per schedule, so the same
/// seed gives each schedule the same sequence of random choices.
/// </summary>
/// <remarks>
/// <para>Life cycle: construct (validates the schedules) --Start--> running (times
/// count from Start) --Stop/Dispose--> stopped (the thread has exited; Stop
/// returns only then). Stop before the host, the address space and the secondary
/// MMU are torn down.</para>
/// <para>One thread for all schedules rather than one each: the schedules are
/// cheap to dispatch next to the page-outs they cause, so more threads would only
/// compete with the vCPUs for the cores; one thread is one track of the timeline
/// (the trace's "page-out driver"); and schedules never run concurrently with
/// each other, so a burst's page count is not disturbed by a periodic page-out in
/// the middle of it. The cost: a long burst delays the periodic schedules, which
/// then skip the ticks they missed instead of running them back to back.</para>
/// <para>The thread waits on the stop token's handle for exactly the time to the
/// next due schedule (rounded up to the millisecond), so Stop wakes it at once
/// and no wake-up is polled for.</para>
/// </remarks>
public sealed partial class PageOutDriver : IDisposable
{
    /// <summary>The name of the driver's thread.</summary>
    public const string ThreadName = "toyvmm-pageout";

    private readonly HostAddressSpace _space;
    private readonly IGuestMemoryManagement _mmu;
    private readonly Hva _ramHva;
    private readonly ulong _ramPages;
    private readonly ILogger _logger;
    private readonly ScheduleRun[] _runs;              // driver thread only, after Start
    private readonly CancellationTokenSource _stop = new();
    private readonly Stopwatch _clock = new();
    private readonly long[] _pagesByPick = new long[Enum.GetValues<PageOutPick>().Length];   // interlocked
    private long _calls;                               // interlocked: page-out calls made
    private long _shrinkRequested, _shrinkGranted, _shrinkAtOnce;   // interlocked: frames
    private int _clampWarned;                          // 1 once the clamp warning was logged
    private Thread? _thread;
    private Exception? _failure;
    private int _disposed;

    /// <summary>
    /// A driver for the guest RAM that <paramref name="ramHva"/> maps in
    /// <paramref name="space"/> (guest-physical 0 to <paramref name="ramBytes"/>),
    /// paged out through <paramref name="mmu"/> (the management side of guest memory). Throws <see cref="ArgumentException"/>
    /// with a one-line message for a bad schedule.
    /// </summary>
    public PageOutDriver(HostAddressSpace space, Hva ramHva, ulong ramBytes, IGuestMemoryManagement mmu,
        IReadOnlyList<PageOutSchedule> schedules, int seed, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(space);
        ArgumentNullException.ThrowIfNull(mmu);
        ArgumentNullException.ThrowIfNull(schedules);
        if (ramBytes < Page.Size || (ramBytes & Page.OffsetMask) != 0)
            throw new ArgumentException($"guest RAM of {ramBytes} bytes is not a positive number of pages");
        Validate(schedules);
        _space = space;
        _mmu = mmu;
        _ramHva = ramHva;
        _ramPages = ramBytes >> Page.Shift;
        _logger = logger ?? NullLogger.Instance;
        Schedules = schedules;
        Seed = seed;
        _runs = new ScheduleRun[schedules.Count];
        for (int i = 0; i < schedules.Count; i++) _runs[i] = new ScheduleRun(i, schedules[i], ScheduleSeed(seed, i));
    }

    public IReadOnlyList<PageOutSchedule> Schedules { get; }
    public int Seed { get; }

    /// <summary>
    /// Runs first on the driver's thread, before any schedule: where a
    /// measurement hub names the thread's track. Set before <see cref="Start"/>.
    /// </summary>
    public Action? ThreadStarted { get; init; }

    /// <summary>Test seam: every page-out call the driver makes, as it returns.</summary>
    internal Action<PageOutCall>? CallMade { get; set; }

    /// <summary>Pages the driver's page-out calls took out of memory, all picks together.</summary>
    public long PagesPagedOut
    {
        get
        {
            long sum = 0;
            for (int i = 0; i < _pagesByPick.Length; i++) sum += Volatile.Read(ref _pagesByPick[i]);
            return sum;
        }
    }

    /// <summary>Pages paged out by the schedules that pick with <paramref name="pick"/>.</summary>
    public long PagesPagedOutBy(PageOutPick pick) => Volatile.Read(ref _pagesByPick[(int)pick]);

    /// <summary>Page-out calls made: one per range (random and sweep picks) or per list of picked pages (cold, hot, bursts).</summary>
    public long Calls => Volatile.Read(ref _calls);

    /// <summary>
    /// Frames the shrink schedules asked the host to take out of service, what it
    /// granted, and how many of those were free and left at once (the rest leave as reclaim frees them).
    /// </summary>
    public (long Requested, long Granted, long AtOnce) ShrinkFrames =>
        (Volatile.Read(ref _shrinkRequested), Volatile.Read(ref _shrinkGranted), Volatile.Read(ref _shrinkAtOnce));

    /// <summary>The exception that ended the driver's thread early, or null.</summary>
    public Exception? Failure => Volatile.Read(ref _failure);

    /// <summary>True when there is nothing to run.</summary>
    public bool IsEmpty => _runs.Length == 0;

    /// <summary>Start the thread; the schedules' times count from now. Does nothing without schedules.</summary>
    public void Start()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (_thread is not null) throw new InvalidOperationException("the page-out driver has already been started");
        if (_runs.Length == 0) return;
        LogStarting(_logger, string.Join("; ", Schedules.Select(Describe)), Seed);
        _clock.Start();
        _thread = new Thread(Run) { IsBackground = true, Name = ThreadName };
        _thread.Start();
    }

    /// <summary>Stop the thread and wait for it: a page-out in progress finishes first. Idempotent.</summary>
    public void Stop()
    {
        if (!_stop.IsCancellationRequested) _stop.Cancel();
        var t = _thread;
        if (t is not null && t != Thread.CurrentThread) t.Join();
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        Stop();
        _stop.Dispose();
    }

    /// <summary>One line for the end-of-run summary, or nothing when the driver had nothing to do.</summary>
    public IEnumerable<string> Summary()
    {
        if (_runs.Length == 0) yield break;
        var used = _runs.Select(r => r.Pick).OfType<PageOutPick>().Distinct().Order()
            .Select(p => $"{p.ToString().ToLowerInvariant()} {PagesPagedOutBy(p)}");
        string picks = string.Join(", ", used);
        if (picks.Length > 0)
            yield return $"forced page-outs: {PagesPagedOut} pages ({picks}) in {Calls} calls";
        var (requested, granted, atOnce) = ShrinkFrames;
        if (_runs.Any(r => r.Schedule is HostShrink))
            yield return $"host shrink: {granted} of {requested} frames taken out of service ({atOnce} free at once, " +
                $"{_space.Host.RetiredFrames - atOnce} as reclaim freed them, {_space.Host.ShrinkDebt} still owed)";
        if (Failure is { } e) yield return $"page-out driver stopped early: {e.Message}";
    }

    /// <summary>
    /// The seed of schedule <paramref name="index"/>: the run's seed for the first,
    /// so that the <c>--pageout-interval</c> shorthand picks what it always picked.
    /// </summary>
    internal static int ScheduleSeed(int seed, int index) => unchecked(seed + index * (int)0x9E3779B9);

    private void Run()
    {
        try
        {
            ThreadStarted?.Invoke();
            var token = _stop.Token;
            while (!token.IsCancellationRequested)
            {
                ScheduleRun? next = null;
                foreach (var r in _runs)
                    if (r.DueTicks != long.MaxValue && (next is null || r.DueTicks < next.DueTicks)) next = r;
                if (next is null) break;   // every schedule is done
                long wait = next.DueTicks - _clock.ElapsedTicks;
                if (wait > 0)
                {
                    if (token.WaitHandle.WaitOne(CeilingMilliseconds(wait))) break;
                    continue;   // the wait ran to its end: the schedule is due now
                }
                RunOnce(next);
                next.Reschedule(_clock.ElapsedTicks);
            }
        }
        catch (Exception e)
        {
            Volatile.Write(ref _failure, e);
            LogFailed(_logger, e);
        }
    }

    /// <summary>A wait of at least <paramref name="stopwatchTicks"/>, in whole milliseconds (the longest wait is about 24 days; the loop then waits again).</summary>
    private static int CeilingMilliseconds(long stopwatchTicks)
    {
        double ms = Math.Ceiling(stopwatchTicks * 1000.0 / Stopwatch.Frequency);
        return (int)Math.Clamp(ms, 1, int.MaxValue - 1);
    }

    /// <summary>A time span in <see cref="Stopwatch"/> ticks, capped far from overflow.</summary>
    private static long ToTicks(TimeSpan t)
    {
        double ticks = t.Ticks * (double)Stopwatch.Frequency / TimeSpan.TicksPerSecond;
        return ticks >= long.MaxValue / 4 ? long.MaxValue / 4 : (long)ticks;
    }

    /// <summary>Throws <see cref="ArgumentException"/> with a one-line message naming the first bad schedule.</summary>
    public static void Validate(IReadOnlyList<PageOutSchedule> schedules)
    {
        ArgumentNullException.ThrowIfNull(schedules);
        for (int i = 0; i < schedules.Count; i++)
        {
            string? problem = schedules[i] switch
            {
                null => "is missing",
                PeriodicPageOut p when p.Every <= TimeSpan.Zero => $"has a period of {p.Every.TotalMilliseconds} ms; it must be positive",
                PeriodicPageOut p when p.Pages is < 1 => $"pages {p.Pages} must be at least 1",
                PeriodicPageOut p when !Enum.IsDefined(p.Pick) => $"pick {(int)p.Pick} is unknown",
                BurstPageOut b when b.At < TimeSpan.Zero => $"starts at {b.At.TotalMilliseconds} ms; it must not be negative",
                BurstPageOut b when !(b.Fraction > 0 && b.Fraction <= 1) => $"fraction {b.Fraction} must be in (0, 1]",
                BurstPageOut b when !Enum.IsDefined(b.Pick) => $"pick {(int)b.Pick} is unknown",
                HostShrink s when s.At < TimeSpan.Zero => $"starts at {s.At.TotalMilliseconds} ms; it must not be negative",
                HostShrink s when s.Bytes < Page.Size => $"shrinks by {s.Bytes} bytes; it must be at least one page (4 KiB)",
                PeriodicPageOut or BurstPageOut or HostShrink => null,
                var other => $"of kind {other.GetType().Name} is not supported",
            };
            if (problem is not null) throw new ArgumentException($"page-out schedule {i + 1} ({Describe(schedules[i])}) {problem}");
        }
    }

    /// <summary>A schedule as the <c>--pageout</c> option spells it.</summary>
    public static string Describe(PageOutSchedule? schedule) => schedule switch
    {
        PeriodicPageOut p => $"every={Ms(p.Every)}{(p.Pages is int n ? $",pages={n}" : "")},pick={Name(p.Pick)}",
        BurstPageOut b => $"at={Ms(b.At)},fraction={b.Fraction.ToString(CultureInfo.InvariantCulture)},pick={Name(b.Pick)}",
        HostShrink h => $"shrink={h.Bytes}@{Ms(h.At)}",
        null => "none",
        _ => schedule.ToString(),
    };

    private static string Ms(TimeSpan t) => t.TotalMilliseconds.ToString(CultureInfo.InvariantCulture) + "ms";

    private static string Name(PageOutPick pick) => Enum.IsDefined(pick) ? pick.ToString().ToLowerInvariant() : ((int)pick).ToString(CultureInfo.InvariantCulture);

    [LoggerMessage(EventId = 300, Level = LogLevel.Error, Message = "page-out driver stopped")]
    private static partial void LogFailed(ILogger logger, Exception e);

    [LoggerMessage(EventId = 303, Level = LogLevel.Debug, Message = "page-out driver: {Schedules} (seed {Seed})")]
    private static partial void LogStarting(ILogger logger, string schedules, int seed);

    [LoggerMessage(EventId = 301, Level = LogLevel.Warning,
        Message = "host shrink by {Requested} frames clamped to {Granted}: the host keeps at least 64 frames plus its high watermark in service")]
    private static partial void LogShrinkClamped(ILogger logger, int requested, int granted);

    [LoggerMessage(EventId = 302, Level = LogLevel.Debug,
        Message = "host shrink: {Granted} frames leave service ({RetiredNow} free ones at once, {Debt} owed), {Target} frames remain")]
    private static partial void LogShrunk(ILogger logger, int granted, int retiredNow, int debt, int target);
}
