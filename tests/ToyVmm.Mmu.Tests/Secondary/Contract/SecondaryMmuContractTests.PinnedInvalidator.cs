using ToyVmm.Mmu.Secondary;
using Xunit;

namespace ToyVmm.Mmu.Tests.Secondary.Contract;

/// <summary>
/// An invalidator that pinned itself (<see cref="ThreadCpuPin"/>) to the CPU a vCPU is pinned to:
/// that vCPU cannot be running while the invalidator does, so step 3 judges it with no barrier;
/// one inside an access is still waited for; an invalidator moved off its CPU from outside
/// forgets its pin and goes back to the barrier.
/// </summary>
public abstract unsafe partial class SecondaryMmuContractTests
{
    [Fact]
    public void Invalidation_PinnedQuiescentVcpu_OnTheCpuTheInvalidatorPinnedItselfTo_IsShotDownWithNoBarrierAndNoSpin()
    {
        int cpu = PinnedThread.FirstCpu;
        if (cpu < 0) return;   // not Linux: nothing is pinned
        var tlb = QuiescentVcpuHoldingPage4PinnedTo(cpu, progress: 7);
        var d = PageOutPage4On(cpu, tlb, onTheInvalidator: () => Assert.Null(ThreadCpuPin.TryPin(cpu)));
        Assert.Equal(_vcpu.PostedGeneration, _vcpu.RemoteGeneration);
        if (!KeepsCounts) return;
        Assert.Equal((1L, 0L, 0L, 1L), (d.ShotDown, d.TargetedBarriers, d.ProcessWideBarriers, d.SameCpu));
        Assert.Equal(1, Interlocked.Read(ref tlb.ProgressReads));   // read when posted, never looked at again: no spin
    }

    [Fact]
    public void Invalidation_PinnedVcpuInsideAnAccess_OnTheCpuTheInvalidatorPinnedItselfTo_IsWaitedForUntilItAcknowledges() =>
        AssertPinnedVcpuInsideAnAccessIsWaitedFor(pinInvalidator: true);

    [Fact]
    public void Invalidation_InvalidatorMovedOffItsPinnedCpuFromOutside_ForgetsThePin_AndJudgesTheVcpuAfterABarrier()
    {
        int cpu = PinnedThread.FirstCpu, other = OtherCpu(cpu);
        if (other < 0) return;   // one CPU: nowhere to move it
        var tlb = QuiescentVcpuHoldingPage4PinnedTo(cpu, progress: 42);   // never moves: the spin ends once it has looked
        int? movedTo = null;
        var d = PageOutPage4On(cpu, tlb, onTheInvalidator: () =>
        {
            Assert.Null(ThreadCpuPin.TryPin(cpu));
            PinnedThread.PinCurrent(other);   // an affinity change ThreadCpuPin did not make
            _ = ThreadCpuPin.Current;
            movedTo = ThreadCpuPin.MovedTo;
        });
        Assert.Equal(other, movedTo);
        Assert.Equal(_vcpu.PostedGeneration, _vcpu.RemoteGeneration);
        if (!KeepsCounts) return;
        Assert.Equal(1, d.ShotDown);
        Assert.Equal(0, d.SameCpu);
        Assert.Equal(1, d.TargetedBarriers + d.ProcessWideBarriers);
    }
}
