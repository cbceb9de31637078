using System.Runtime.CompilerServices;

namespace ToyVmm.Mmu.Metrics;

// The recording path (IMmuEventSink): the calling thread's recorder, the
// current phase's cells, one histogram record, and with tracing on one ring
// write. No lock, no interlocked operation, no allocation in steady state.
public sealed partial class MeasurementHub
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private PhaseCells Cells(ThreadRecorder r) => r.Cells(_phase);

    public void FaultCompleted(int vcpu, ulong gfn, FaultKind kind, long startTicks, long endTicks)
    {
        var r = Recorder();
        long ns = LatencyScale.TicksToNs(endTicks - startTicks);
        LatencyScale.Record(ref Cells(r).Faults[(int)kind], ns);
        _meter.FaultLatency(kind, ns);
        if (r.Ring is { } ring)
            ring.Add(new TraceEvent(startTicks, endTicks, VcpuTrack(vcpu, r), TraceKind.Fault, gfn, (ulong)kind, vcpu));
    }

    public void FaultRetried(int vcpu)
    {
        var cells = Cells(Recorder());
        Volatile.Write(ref cells.Retries, cells.Retries + 1);
    }

    public void InvalidateCompleted(InvalidateCause cause, ulong firstPage, ulong pages, long startTicks, long endTicks)
    {
        var r = Recorder();
        var cells = Cells(r);
        long ns = LatencyScale.TicksToNs(endTicks - startTicks);
        LatencyScale.Record(ref cells.Invalidations[(int)cause], ns);
        ref long covered = ref cells.InvalidatedPages[(int)cause];
        Volatile.Write(ref covered, covered + (long)pages);
        _meter.InvalidationLatency(cause, ns);
        r.Ring?.Add(new TraceEvent(startTicks, endTicks, r.Track, TraceKind.Invalidate, firstPage, pages, (int)cause));
    }

    public void ShootdownCompleted(int vcpu, ShootdownStep step, long startTicks, long endTicks)
    {
        var r = Recorder();
        LatencyScale.Record(ref Cells(r).Shootdowns[(int)step], LatencyScale.TicksToNs(endTicks - startTicks));
        r.Ring?.Add(new TraceEvent(startTicks, endTicks, r.Track, TraceKind.ShootdownWait, (ulong)vcpu, 0, (int)step));
    }

    public void PageOutBatch(long pages, long startTicks, long endTicks)
    {
        var r = Recorder();
        var cells = Cells(r);
        LatencyScale.Record(ref cells.PageOutBatches, LatencyScale.TicksToNs(endTicks - startTicks));
        Volatile.Write(ref cells.PagesPagedOut, cells.PagesPagedOut + pages);
        r.Ring?.Add(new TraceEvent(startTicks, endTicks, r.Track, TraceKind.PageOutBatch, 0, (ulong)pages, 0));
    }

    public void SwapWritten(uint firstSlot, int pages, long startTicks, long endTicks)
    {
        // Latency and pages are the page-out batch's; the write itself only shows on the timeline.
        var r = Recorder();
        r.Ring?.Add(new TraceEvent(startTicks, endTicks, SwapTrack, TraceKind.SwapWrite, firstSlot, (ulong)pages, 0));
    }

    public void SwapRead(uint slot, long startTicks, long endTicks)
    {
        var r = Recorder();
        LatencyScale.Record(ref Cells(r).SwapReads, LatencyScale.TicksToNs(endTicks - startTicks));
        r.Ring?.Add(new TraceEvent(startTicks, endTicks, SwapTrack, TraceKind.SwapRead, slot, 1, 0));
    }

    public void Violation(ulong gfn, uint frame, int vcpu)
    {
        if (!TracingOn) return;
        var r = Recorder();
        long now = System.Diagnostics.Stopwatch.GetTimestamp();
        r.Ring!.Add(new TraceEvent(now, now, vcpu >= 0 ? VcpuTrack(vcpu, r) : r.Track, TraceKind.Violation, gfn, frame, vcpu));
    }

    private int _swapTrack = -1;

    /// <summary>The <c>swap I/O</c> track: every thread's swap reads and writes go there.</summary>
    private int SwapTrack
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            int t = Volatile.Read(ref _swapTrack);
            if (t >= 0) return t;
            t = Track("swap I/O");
            Volatile.Write(ref _swapTrack, t);
            return t;
        }
    }
}
