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

    [Fact]
    public void Invalidation_VcpuOnAnotherCpuAcknowledgingWhileTheInvalidatorJudgesItsOwnCpus_IsDoneWithoutItsFilterOrProgressRead()
    {
        int cpu = PinnedThread.FirstCpu, other = OtherCpu(cpu);
        if (other < 0) return;   // one CPU: no other CPU to pin it to
        var tlb = QuiescentVcpuHoldingPage4PinnedTo(cpu, progress: 7);
        var remote = new VcpuLink(1);
        var remoteTlb = new ScriptedTlb { ProgressValue = 42 };   // inside an access: only its own answer can do it
        remote.AttachTlb(remoteTlb);
        remote.SetPinnedCpu(other);
        _mmu.AttachVcpu(remote);
        _checker.WatchVcpus(() => [_vcpu, remote]);
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(remote, new Gpa(0x4000), AccessKind.Read, out _));
        remote.EnterGuest();
        // The vCPU on the other CPU answers its post while the invalidator shoots its own CPU's vCPU down.
        tlb.OnShootDown = () =>
        {
            remote.TakeRequests();
            remote.TakeFlushRanges(new (ulong, ulong)[VcpuLink.MaxPendingRanges]);
            remote.AcknowledgeFlush();
        };
        var d = PageOutPage4On(cpu, tlb, onTheInvalidator: () => Assert.Null(ThreadCpuPin.TryPin(cpu)));
        remote.ExitGuest();
        Assert.Equal(remote.PostedGeneration, remote.FlushedGeneration);
        Assert.Equal(0, Interlocked.Read(ref remoteTlb.MayHoldCalls));
        Assert.Equal(0, Interlocked.Read(ref remoteTlb.ProgressReads));
        AssertNoViolation();
        if (KeepsCounts) Assert.Equal((1L, 1L, 0L, 1L), (d.ShotDown, d.Acknowledged, d.TargetedBarriers + d.ProcessWideBarriers, d.SameCpu));
    }
}
