using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace ToyVmm.Mmu.Host;

/// <summary>
/// The background reclaimer (kswapd): a hosted service on its own dedicated
/// thread. It sleeps until the free count falls to the low watermark (the
/// allocator wakes it) and reclaims until it is back at high. Its
/// invalidations start non-blocking; a refusal backs off and, after
/// <see cref="HostMemoryOptions.NonBlockingTries"/>, retries blocking.
/// Stop it before disposing the <see cref="HostMemory"/>.
/// </summary>
public sealed partial class HostReclaimerService : BackgroundService
{
    private readonly HostMemory _host;
    private readonly ILogger _log;

    public HostReclaimerService(HostMemory host, ILogger<HostReclaimerService>? log = null)
    {
        _host = host;
        _log = (ILogger?)log ?? NullLogger.Instance;
    }

    /// <summary>Rounds run (for tests and reports).</summary>
    public long Rounds => Volatile.Read(ref _rounds);
    private long _rounds;

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
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

    private void Run(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            // Wake on the allocator's signal; also look every 50 ms in case a wake was missed.
            _host.WaitForWake(50, stop);
            // Read each round: a shrink of the pool scales the watermarks down.
            var (_, low, high) = _host.Watermarks;
            if (_host.FreeFrames > low) continue;
            _host.Stats.Count(ref _host.Stats.BackgroundReclaimWakeups);
            int priority = 0, idle = 0, tries = 0;
            while (!stop.IsCancellationRequested && _host.FreeFrames < high)
            {
                bool mayBlock = tries >= _host.Options.NonBlockingTries;
                int got = _host.Reclaim.ShrinkOnce(priority, mayBlock);
                Interlocked.Increment(ref _rounds);
                if (got > 0) { idle = 0; tries = 0; continue; }
                tries++;
                if (++idle >= 4)
                {
                    if (priority < 2) { priority++; idle = 0; continue; }
                    LogStuck(_host.FreeFrames, high);
                    break;   // nothing reclaimable now: sleep until woken again
                }
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "background reclaimer failed")]
    private partial void LogFailed(Exception e);

    [LoggerMessage(Level = LogLevel.Debug, Message = "background reclaimer can free nothing more ({Free} free, high watermark {High})")]
    private partial void LogStuck(int free, int high);
}
