namespace ToyVmm.Mmu.Metrics;

/// <summary>
/// What the host and the secondary MMU tell the measurement hub: one call per
/// finished event, with its start and end as <see cref="System.Diagnostics.Stopwatch"/>
/// ticks, on the thread that did the work. Implementations must take no lock and
/// allocate nothing per call in steady state: the calls sit on the fault path.
/// </summary>
public interface IMmuEventSink
{
    /// <summary>A secondary fault of vCPU <paramref name="vcpu"/> on guest page <paramref name="gfn"/> completed; the host answered it as <paramref name="kind"/>.</summary>
    void FaultCompleted(int vcpu, ulong gfn, FaultKind kind, long startTicks, long endTicks);

    /// <summary>A secondary fault dropped its page and retried (an invalidation overlapped it).</summary>
    void FaultRetried(int vcpu);

    /// <summary>
    /// A secondary MMU saw an invalidation of <paramref name="pages"/> host pages from host-virtual page
    /// <paramref name="firstPage"/> through, from its notifier start to its end.
    /// </summary>
    void InvalidateCompleted(InvalidateCause cause, ulong firstPage, ulong pages, long startTicks, long endTicks);

    /// <summary>One vCPU's TLB flush of a shootdown was completed by <paramref name="step"/>; the ticks span the invalidator's wait for it.</summary>
    void ShootdownCompleted(int vcpu, ShootdownStep step, long startTicks, long endTicks);

    /// <summary>A batch of pages left memory (reclaim or a forced page-out): <paramref name="pages"/> written to swap or dropped.</summary>
    void PageOutBatch(long pages, long startTicks, long endTicks);

    /// <summary>A run of <paramref name="pages"/> pages was written to consecutive swap slots from <paramref name="firstSlot"/>.</summary>
    void SwapWritten(uint firstSlot, int pages, long startTicks, long endTicks);

    /// <summary>A swap slot was read back into a frame.</summary>
    void SwapRead(uint slot, long startTicks, long endTicks);

    /// <summary>The invariant checker found a violation on guest page <paramref name="gfn"/> and host frame <paramref name="frame"/> (vCPU or -1).</summary>
    void Violation(ulong gfn, uint frame, int vcpu);
}
