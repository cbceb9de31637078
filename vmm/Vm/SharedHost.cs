using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Grants;
using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Vm;

/// <summary>
/// The one simulated host under several VMs (GUEST-ABI 1.1 "Several VMs on one
/// host"): one frame pool, one swap file, one background reclaimer. Each VM's
/// <see cref="HostBackedMemory"/> takes an address space of it; what the host
/// records itself (page-out batches, swap I/O) goes to a measurement hub of its
/// own, and every VM's invariant checker hears every frame free.
/// </summary>
/// <remarks>
/// Life cycle: construct (starts the reclaimer) --> the VMs' memories are made
/// over it and run --> <see cref="StopBackground"/> --> the VMs' memories are
/// disposed --> <see cref="Dispose"/> (tears the host down, deletes the swap file).
/// Lock: <c>_freedLock</c> guards the list of frame-free listeners (replaced
/// whole, read lock-free on the free path).
/// </remarks>
public sealed class SharedHost : IDisposable
{
    private readonly HostReclaimerService _reclaimer;
    private readonly CancellationTokenSource _stop = new();
    private readonly ILogger _logger;
    private readonly Lock _freedLock = new();
    private Action<Hfn>[] _frameFreed = [];   // replaced under _freedLock, read lock-free
    private int _disposed;

    /// <param name="options">The frame pool and the swap file.</param>
    /// <param name="traceLimit">Timeline events the host's own hub keeps (0: no timeline).</param>
    /// <param name="measure">False: the host records nothing (as <see cref="GuestMemoryConfig.Measure"/>).</param>
    public SharedHost(HostMemoryOptions options, long traceLimit = 0, bool measure = true, ILogger? logger = null)
    {
        _logger = logger ?? NullLogger.Instance;
        Host = new HostMemory(options);
        try
        {
            Measurements = new MeasurementHub(0, traceLimit);
            if (measure) Host.Events = Measurements;
            Measurements.SetHostCounters(() => Host.FreeFrames, () => 0);
            Host.FrameFreed = frame =>
            {
                foreach (var listener in Volatile.Read(ref _frameFreed)) listener(frame);
            };
            _reclaimer = new HostReclaimerService(Host);
            _reclaimer.StartAsync(_stop.Token).GetAwaiter().GetResult();
        }
        catch
        {
            Measurements?.Dispose();
            Host.Dispose();
            throw;
        }
    }

    public HostMemory Host { get; }

    /// <summary>The host's grants, by key (GUEST-ABI 1.1): one table for every VM on it.</summary>
    public GrantTable Grants { get; } = new();

    /// <summary>What the host itself records: page-out batches, swap writes and reads (the reclaimer's and swap I/O tracks).</summary>
    public MeasurementHub Measurements { get; }

    /// <summary>Add a listener of frame frees (a VM's invariant checker); it runs with no host lock held.</summary>
    public void OnFrameFreed(Action<Hfn> listener)
    {
        lock (_freedLock) _frameFreed = [.. _frameFreed, listener];
    }

    /// <summary>Stop the background reclaimer.</summary>
    public void StopBackground()
    {
        if (_stop.IsCancellationRequested) return;
        _stop.Cancel();
        try { _reclaimer.StopAsync(CancellationToken.None).GetAwaiter().GetResult(); }
        catch (Exception ex) { _logger.LogDebug("reclaimer stopped with {Error}", ex.Message); }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        StopBackground();
        Measurements.EndRun();
        Host.Dispose();
        Measurements.Dispose();
        _stop.Dispose();
    }
}
