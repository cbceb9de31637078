using System.Diagnostics;
using HdrHistogram;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Bench.Secondary;

/// <summary>
/// What the machine gives the invalidation probe without the MMU: three controls timed in the
/// probe's own conditions (the same pinned thread, woken by the same timer, between the same
/// invalidations), so that the part of a tail no MMU code causes shows in them too. Each one is
/// a piece of a shootdown's cross-CPU path with everything else taken away.
/// <list type="bullet">
/// <item><b>Local work</b>: the thread, as it wakes, spins on the clock for <see cref="LocalWorkNs"/>.
/// Anything over that is time the CPU was taken from it: an interrupt, or the hypervisor
/// running something else on it.</item>
/// <item><b>A bare post</b>: a flush of a guest frame no vCPU holds, posted to each running vCPU on
/// another CPU, and the wait until every one answered (no zap, no MMU lock, no notifier walk, no
/// filter, and no barrier however long it takes): how long the other CPU takes to answer at all.</item>
/// <item><b>A bare barrier</b>: the barrier aimed at those vCPUs' CPUs (<see cref="TargetedBarrier"/>),
/// what step 3 of the shootdown pays for a vCPU that has not answered, while they run.</item>
/// </list>
/// A shootdown that keeps the vCPUs' own paths free of fences is done for a vCPU only by its answer
/// or by that barrier, so the two bare rows bound what any such shootdown can take on this machine.
/// </summary>
internal sealed class MachineControl
{
    /// <summary>The local work's length: the whole invalidation's target.</summary>
    public const long LocalWorkNs = 1_000;

    private static readonly long LocalWorkTicks = Math.Max(1, LocalWorkNs * Stopwatch.Frequency / 1_000_000_000);

    public readonly HistogramBase Local = LatencyScale.NewHistogram();
    public readonly HistogramBase Post = LatencyScale.NewHistogram();
    public readonly HistogramBase Barrier = LatencyScale.NewHistogram();

    /// <summary>Spin on the clock for <see cref="LocalWorkNs"/> and record how long it really took.</summary>
    public void RunLocalWork()
    {
        long t0 = Stopwatch.GetTimestamp(), t;
        do t = Stopwatch.GetTimestamp(); while (t - t0 < LocalWorkTicks);
        Local.RecordValue(LatencyScale.TicksToNs(t - t0));
    }

    /// <summary>
    /// The bare post of <paramref name="gfn"/> (held by none of them) to <paramref name="others"/>; it
    /// allocates nothing, as the shootdown itself. Nothing is recorded when one was outside guest mode
    /// (it takes the post when it enters again, and nobody waits).
    /// </summary>
    public void RunBarePost(ReadOnlySpan<VcpuLink> others, ulong gfn)
    {
        Span<long> tickets = stackalloc long[others.Length];
        long t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < others.Length; i++)
        {
            tickets[i] = others[i].RequestFlush(gfn, gfn);
            if (tickets[i] < 0) return;
        }
        for (int i = 0; i < others.Length; i++)
            while (!others[i].IsFlushed(tickets[i])) Thread.SpinWait(1);
        Post.RecordValue(LatencyScale.TicksToNs(Stopwatch.GetTimestamp() - t0));
    }

    /// <summary>The bare barrier aimed at each of <paramref name="cpus"/>; nothing is recorded when one is refused.</summary>
    public void RunBareBarrier(ReadOnlySpan<int> cpus)
    {
        long t0 = Stopwatch.GetTimestamp();
        foreach (int cpu in cpus)
            if (!TargetedBarrier.TryOn(cpu)) return;
        Barrier.RecordValue(LatencyScale.TicksToNs(Stopwatch.GetTimestamp() - t0));
    }
}
