using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Metrics;

/// <summary>
/// Fault and invalidation latencies of one VM: a histogram per vCPU for
/// secondary faults and one per invalidating thread, each written by one
/// thread only and merged when read.
/// </summary>
public sealed class MmuStats : IMmuEventSink
{
    private readonly LatencyHistogram[] _faults;
    private readonly long[] _retries;
    private readonly List<LatencyHistogram> _invalidateHistograms = new();  // guarded by itself; grows once per thread
    private readonly ThreadLocal<LatencyHistogram> _invalidates;
    private long _invalidatedPages;

    public MmuStats(int vcpus)
    {
        _faults = Enumerable.Range(0, vcpus).Select(_ => new LatencyHistogram()).ToArray();
        _retries = new long[vcpus];
        _invalidates = new ThreadLocal<LatencyHistogram>(() =>
        {
            var h = new LatencyHistogram();
            lock (_invalidateHistograms) _invalidateHistograms.Add(h);
            return h;
        });
    }

    public void FaultCompleted(int vcpu, long ticks)
    {
        if ((uint)vcpu < (uint)_faults.Length) _faults[vcpu].RecordTicks(ticks);
    }

    public void FaultRetried(int vcpu)
    {
        if ((uint)vcpu < (uint)_retries.Length) Interlocked.Increment(ref _retries[vcpu]);
    }

    public void InvalidateCompleted(long ticks, ulong pages)
    {
        _invalidates.Value!.RecordTicks(ticks);
        Interlocked.Add(ref _invalidatedPages, (long)pages);
    }

    public long FaultRetries => _retries.Sum();
    public long InvalidatedPages => Volatile.Read(ref _invalidatedPages);

    /// <summary>All vCPUs' fault latencies merged (read after the vCPUs stop for exact figures).</summary>
    public LatencyHistogram Faults()
    {
        var all = new LatencyHistogram();
        foreach (var h in _faults) all.MergeFrom(h);
        return all;
    }

    public LatencyHistogram FaultsOf(int vcpu) => _faults[vcpu];

    public LatencyHistogram Invalidations()
    {
        var all = new LatencyHistogram();
        lock (_invalidateHistograms) foreach (var h in _invalidateHistograms) all.MergeFrom(h);
        return all;
    }
}
