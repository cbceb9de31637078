namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// How each vCPU flush of a TLB shootdown was completed (the steps of
/// VcpuShootdown.FlushLocked, mmu/LOCKING.md): counts of vCPUs in guest mode that
/// were asked, and which step let the invalidator go on.
/// </summary>
public struct ShootdownCounts
{
    /// <summary>vCPU flushes posted to a vCPU in guest mode.</summary>
    public long Asked;
    /// <summary>Step 1: the vCPU's filter showed it never took a pointer into the range.</summary>
    public long NotHeld;
    /// <summary>Step 2: the vCPU acknowledged within the short spin.</summary>
    public long Acknowledged;
    /// <summary>Step 3: shot down from outside while the vCPU was at a quiet instruction.</summary>
    public long ShotDown;
    /// <summary>Step 4: the invalidator waited for the acknowledgement.</summary>
    public long Waited;
    /// <summary>Step 3's barriers aimed at one pinned vCPU's CPU (<see cref="TargetedBarrier"/>).</summary>
    public long TargetedBarriers;
    /// <summary>Step 3's process-wide barriers.</summary>
    public long ProcessWideBarriers;
    /// <summary>Step 3 run with no barrier, for vCPUs pinned to the CPU the invalidator's thread is pinned to (<see cref="ThreadCpuPin"/>).</summary>
    public long SameCpu;

    public override readonly string ToString() => Asked == 0
        ? "no vCPU in guest mode had to flush"
        : $"{Asked} vCPU flushes: {Pct(NotHeld)} never held the range, {Pct(Acknowledged)} acknowledged at once, " +
          $"{Pct(ShotDown)} shot down from outside, {Pct(Waited)} waited for" +
          (TargetedBarriers + ProcessWideBarriers == 0 ? "" : $"; barriers: {TargetedBarriers} aimed at a CPU, {ProcessWideBarriers} process-wide") +
          (SameCpu == 0 ? "" : $"; {SameCpu} judged on the invalidator's own pinned CPU without a barrier");

    private readonly string Pct(long n) => $"{100.0 * n / Asked:F0}%";
}
