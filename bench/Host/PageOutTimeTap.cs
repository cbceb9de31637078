using System.Diagnostics;
using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Bench.Host;

/// <summary>
/// Where one thread's page-out wall time goes: forwards every event to the run's
/// measurement hub and, for events on the thread it watches, sums the time inside
/// notifier invalidations (zap, shootdown and the host's PTE change), the shootdown
/// waits by the step that ended them, and the swap writes. The scheduler's side
/// (on CPU, runnable but not running, blocked) comes from the thread's schedstat.
/// </summary>
internal sealed class PageOutTimeTap(IMmuEventSink inner) : IMmuEventSink
{
    private int _thread = -1;
    private long _lastCpuNs;
    private bool _chargeCpu;
    public long InvalidateTicks, SwapWriteTicks, Invalidations, SwapWrites;

    /// <summary>
    /// Thread-CPU ns between one event and the next on the watched thread, charged to the later
    /// event's step: [0] up to a shootdown's end (taking pages, zap, shootdown and its waits),
    /// [1] up to the invalidation's end (unmap, swap slots), [2] up to a swap write's end
    /// (checksum, pwritev), [3] up to the batch's end (unlock, free).
    /// </summary>
    public readonly long[] CpuNsByStep = new long[4];
    public readonly long[] ShootdownTicks = new long[4];
    public readonly long[] Shootdowns = new long[4];

    /// <summary>Watch the calling thread from now on, with every sum at zero.</summary>
    /// <param name="chargeCpu">Fill <see cref="CpuNsByStep"/>: a read of the thread's CPU clock (a system call) at each event.</param>
    public void WatchThisThread(bool chargeCpu)
    {
        _thread = Environment.CurrentManagedThreadId;
        _chargeCpu = chargeCpu;
        InvalidateTicks = SwapWriteTicks = Invalidations = SwapWrites = 0;
        Array.Clear(ShootdownTicks);
        Array.Clear(Shootdowns);
        Array.Clear(CpuNsByStep);
        _lastCpuNs = chargeCpu ? HostLatencyProbe.ThreadCpuNs() : 0;
    }

    private void Charge(int step)
    {
        if (!_chargeCpu) return;
        long now = HostLatencyProbe.ThreadCpuNs();
        CpuNsByStep[step] += now - _lastCpuNs;
        _lastCpuNs = now;
    }

    private bool Mine => Environment.CurrentManagedThreadId == _thread;

    public void FaultCompleted(int vcpu, ulong gfn, FaultKind kind, long startTicks, long endTicks) => inner.FaultCompleted(vcpu, gfn, kind, startTicks, endTicks);
    public void FaultRetried(int vcpu) => inner.FaultRetried(vcpu);

    public void InvalidateCompleted(InvalidateCause cause, ulong firstPage, ulong pages, long startTicks, long endTicks)
    {
        if (Mine) { InvalidateTicks += endTicks - startTicks; Invalidations++; Charge(1); }
        inner.InvalidateCompleted(cause, firstPage, pages, startTicks, endTicks);
    }

    public void ShootdownCompleted(int vcpu, ShootdownStep step, long startTicks, long endTicks)
    {
        if (Mine) { ShootdownTicks[(int)step] += endTicks - startTicks; Shootdowns[(int)step]++; Charge(0); }
        inner.ShootdownCompleted(vcpu, step, startTicks, endTicks);
    }

    public void PageOutBatch(long pages, long startTicks, long endTicks)
    {
        if (Mine) Charge(3);
        inner.PageOutBatch(pages, startTicks, endTicks);
    }

    public void SwapWritten(uint firstSlot, int pages, long startTicks, long endTicks)
    {
        if (Mine) { SwapWriteTicks += endTicks - startTicks; SwapWrites++; Charge(2); }
        inner.SwapWritten(firstSlot, pages, startTicks, endTicks);
    }

    public void SwapRead(uint slot, long startTicks, long endTicks) => inner.SwapRead(slot, startTicks, endTicks);
    public void Violation(ulong gfn, uint frame, int vcpu) => inner.Violation(gfn, frame, vcpu);

    public static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
}

/// <summary>The calling thread's scheduler figures (Linux /proc/thread-self/schedstat): ns on a CPU, ns runnable but waiting for one.</summary>
internal static class ThreadSchedStat
{
    public static (long OnCpuNs, long RunQueueNs) Read()
    {
        try
        {
            var parts = File.ReadAllText("/proc/thread-self/schedstat").Split(' ');
            return (long.Parse(parts[0]), long.Parse(parts[1]));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return (0, 0);
        }
    }
}
