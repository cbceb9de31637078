using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace ToyVmm.Mmu.Host;

// Locks: none of its own. It blocks on HostMemory's ReclaimerWake (a leaf monitor) with
// no host lock held, and reclaims through Reclaimer (LRU, page, address-space locks in
// the order mmu/LOCKING.md gives).

/// <summary>
/// The background reclaimer (kswapd): a hosted service on its own dedicated thread.
/// </summary>
/// <remarks>
/// <para>When it runs a round: on start, on a signal (the allocator signals at or below
/// the low watermark, a shrink of the pool signals), and after a back-off when its last
/// round stopped short. A round reclaims until the free count reaches the high watermark,
/// whatever the free count was when the signal was sent: a signal owes a round to high
/// even when direct reclaim lifted the count above low before the reclaimer got a core.</para>
/// <para>How a round ends and what follows:</para>
/// <list type="table">
/// <item><term>free reached high</term><description>block until the next signal, with no timeout (nothing else owes a round)</description></item>
/// <item><term>stalled (passes freed nothing, for reasons that may pass: page locks or references held, refused non-blocking starts, pages isolated by another reclaimer)</term>
/// <description>sleep <see cref="MinBackOffMs"/>, then doubled after each round that frees nothing, up to <see cref="MaxBackOffMs"/>; signals do not cut it short; then a new round</description></item>
/// <item><term>nothing to do (the last passes took pages and every one was dirty with no swap slot)</term><description>block until the next signal</description></item>
/// </list>
/// <para>Its invalidations start non-blocking; a refusal backs off and, after
/// <see cref="HostMemoryOptions.NonBlockingTries"/>, retries blocking. Stop it before
/// disposing the <see cref="HostMemory"/>.</para>
/// </remarks>
public sealed partial class HostReclaimerService : BackgroundService
{
    /// <summary>The first wait before a stalled round is retried.</summary>
    public const int MinBackOffMs = 1;
    /// <summary>The longest wait between retries of stalled rounds: a round that can never finish (every page pinned) costs one round a second.</summary>
    public const int MaxBackOffMs = 1024;

    /// <summary>Passes in a row that free nothing before the round raises its priority, or at the highest priority ends.</summary>
    private const int IdlePassesPerPriority = 4;

    private readonly HostMemory _host;
    private readonly ILogger _log;

    public HostReclaimerService(HostMemory host, ILogger<HostReclaimerService>? log = null)
    {
        _host = host;
        _log = (ILogger?)log ?? NullLogger.Instance;
    }

    /// <summary>Reclaim passes run (for tests and reports).</summary>
    public long Rounds => Volatile.Read(ref _rounds);
    private long _rounds;

    /// <summary>Times the thread woke and looked at the free count (a signal, the end of a back-off, the start).</summary>
    public long Looks => Volatile.Read(ref _looks);
    private long _looks;

    /// <summary>The reclaimer thread's kernel thread id (Linux); 0 before it starts, -1 where there is none to read.</summary>
    internal int OsThreadId => Volatile.Read(ref _osThreadId);
    private int _osThreadId;

    /// <summary>How the last round ended; null before the first look.</summary>
    internal RoundEnd? LastRoundEnd
    {
        get { int e = Volatile.Read(ref _lastEnd); return e < 0 ? null : (RoundEnd)e; }
    }
    private int _lastEnd = -1;

    /// <summary>How a round ended.</summary>
    internal enum RoundEnd
    {
        /// <summary>Free frames at or above the high watermark (also: nothing was owed).</summary>
        Balanced,
        /// <summary>Below high, and what stopped it may pass: retried after a back-off.</summary>
        Stalled,
        /// <summary>Below high, and every page the last passes took was dirty with nowhere to go: wait for a signal.</summary>
        NothingToDo,
        /// <summary>Stop was requested.</summary>
        Stopped,
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            Volatile.Write(ref _osThreadId, CurrentOsThreadId());
            try { Run(stoppingToken); done.SetResult(); }
            catch (OperationCanceledException) { done.SetResult(); }
            catch (Exception e) { LogFailed(e); done.SetException(e); }
        })
        {
            IsBackground = true,
            Name = "toyvmm-reclaim",
        };
        thread.Start();
        return done.Task;
    }

    /// <summary>The calling thread's kernel id from /proc/thread-self (a link to &lt;pid&gt;/task/&lt;tid&gt;), or -1.</summary>
    private static int CurrentOsThreadId()
    {
        try
        {
            string? target = OperatingSystem.IsLinux() ? new DirectoryInfo("/proc/thread-self").LinkTarget : null;
            return int.TryParse(Path.GetFileName(target), out int tid) ? tid : -1;
        }
        catch (IOException) { return -1; }
        catch (UnauthorizedAccessException) { return -1; }
    }

    private void Run(CancellationToken stop)
    {
        var wake = _host.ReclaimerWake;
        int backOffMs = 0;   // 0: no retry owed, wait for a signal
        bool first = true;   // the start is a look: the pool may already be short
        while (!stop.IsCancellationRequested)
        {
            if (first) { first = false; wake.Take(); }
            else if (backOffMs == 0) wake.WaitForSignal(stop);
            else wake.Sleep(backOffMs, stop);
            Interlocked.Increment(ref _looks);
            var end = Balance(stop, out int freed);
            Volatile.Write(ref _lastEnd, (int)end);
            switch (end)
            {
                case RoundEnd.Stalled:
                    // A round that freed something starts the back-off over: it was not stuck, only slowed.
                    backOffMs = freed > 0 || backOffMs == 0 ? MinBackOffMs : Math.Min(backOffMs * 2, MaxBackOffMs);
                    _host.Stats.Count(ref _host.Stats.BackgroundReclaimStalls);
                    LogStalled(_host.FreeFrames, _host.Watermarks.High, backOffMs);
                    break;
                case RoundEnd.NothingToDo:
                    backOffMs = 0;
                    LogNothingToDo(_host.FreeFrames, _host.Watermarks.High);
                    break;
                default:
                    backOffMs = 0;
                    break;
            }
        }
    }

    /// <summary>
    /// One round: reclaim until free frames reach the high watermark (read at every pass:
    /// a shrink of the pool scales it down), raising the priority after passes that free
    /// nothing. <paramref name="freed"/> counts the frames the round's passes freed.
    /// </summary>
    private RoundEnd Balance(CancellationToken stop, out int freed)
    {
        freed = 0;
        if (_host.FreeFrames >= _host.Watermarks.High) return RoundEnd.Balanced;
        _host.Stats.Count(ref _host.Stats.BackgroundReclaimWakeups);
        int priority = 0, idle = 0, tries = 0;
        bool onlyUnswappable = true;   // every idle pass at the highest priority found only pages with nowhere to go
        while (_host.FreeFrames < _host.Watermarks.High)
        {
            if (stop.IsCancellationRequested) return RoundEnd.Stopped;
            bool mayBlock = tries >= _host.Options.NonBlockingTries;
            var pass = _host.Reclaim.ShrinkPass(priority, mayBlock);
            Interlocked.Increment(ref _rounds);
            if (pass.Freed > 0)
            {
                freed += pass.Freed;
                idle = 0;
                tries = 0;
                onlyUnswappable = true;
                continue;
            }
            tries++;
            if (priority == 2) onlyUnswappable &= pass.OnlyUnswappable;
            if (++idle < IdlePassesPerPriority) continue;
            if (priority < 2) { priority++; idle = 0; continue; }
            return onlyUnswappable ? RoundEnd.NothingToDo : RoundEnd.Stalled;
        }
        return RoundEnd.Balanced;
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "background reclaimer failed")]
    private partial void LogFailed(Exception e);

    [LoggerMessage(Level = LogLevel.Debug, Message = "background reclaimer stalled ({Free} free, high watermark {High}): retrying in {BackOffMs} ms")]
    private partial void LogStalled(int free, int high, int backOffMs);

    [LoggerMessage(Level = LogLevel.Debug, Message = "background reclaimer can free nothing more: every page left is dirty and swap has no slot ({Free} free, high watermark {High})")]
    private partial void LogNothingToDo(int free, int high);
}
