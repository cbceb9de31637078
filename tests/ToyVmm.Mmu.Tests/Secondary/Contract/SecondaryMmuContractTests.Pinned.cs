using ToyVmm.Mmu.Secondary;
using Xunit;

namespace ToyVmm.Mmu.Tests.Secondary.Contract;

/// <summary>
/// The TLB shootdown of pinned vCPUs (<see cref="VcpuLink.PinnedCpu"/>): the barrier aimed at their
/// CPUs, no spin for a vCPU pinned to the invalidator's own CPU, and the process-wide barrier
/// whenever a vCPU concerned is not pinned. The invalidator runs on a thread pinned to a known CPU.
/// </summary>
public abstract unsafe partial class SecondaryMmuContractTests
{
    /// <summary>The MMU's shootdown counts (zero for an MMU that does not keep them).</summary>
    private ShootdownCounts CountsSoFar => _mmu is SecondaryMmuCore core ? core.Shootdowns : default;

    private bool KeepsCounts => _mmu is SecondaryMmuCore;

    /// <summary>A CPU this process may use other than <paramref name="cpu"/>, or -1 on a one-CPU machine.</summary>
    private static int OtherCpu(int cpu) => PinnedThread.AllowedCpus().FirstOrDefault(c => c != cpu, -1);

    /// <summary>A vCPU in guest mode holding page 4, seen quiescent, its progress counter at <paramref name="progress"/>, pinned to <paramref name="cpu"/>.</summary>
    private ScriptedTlb QuiescentVcpuHoldingPage4PinnedTo(int cpu, long progress)
    {
        var tlb = RunningVcpuHoldingPage4(HostKind.Real);
        tlb.Quiescent = true;
        tlb.ProgressValue = progress;
        _vcpu.SetPinnedCpu(cpu);
        return tlb;
    }

    /// <summary>Page 4 paged out on a thread pinned to <paramref name="cpu"/>; the shootdown's counts over it.</summary>
    private ShootdownCounts PageOutPage4On(int cpu, ScriptedTlb tlb, Action? onTheInvalidator = null)
    {
        var before = CountsSoFar;
        PinnedThread.Run(cpu, () =>
        {
            onTheInvalidator?.Invoke();
            PageOutPage4_ShotDownFromOutside(tlb);
        });
        var after = CountsSoFar;
        return new ShootdownCounts
        {
            ShotDown = after.ShotDown - before.ShotDown,
            Acknowledged = after.Acknowledged - before.Acknowledged,
            TargetedBarriers = after.TargetedBarriers - before.TargetedBarriers,
            ProcessWideBarriers = after.ProcessWideBarriers - before.ProcessWideBarriers,
            SameCpu = after.SameCpu - before.SameCpu,
        };
    }

    [Fact]
    public void Invalidation_PinnedQuiescentVcpuOnTheInvalidatorsCpu_IsShotDownWithoutTheSpin_TheBarrierAimedAtThatCpu()
    {
        int cpu = PinnedThread.FirstCpu;
        if (cpu < 0) return;   // not Linux: nothing is pinned
        var tlb = QuiescentVcpuHoldingPage4PinnedTo(cpu, progress: 7);
        var d = PageOutPage4On(cpu, tlb);
        if (!KeepsCounts) return;
        Assert.Equal(1, d.ShotDown);
        if (TargetedBarrier.IsAvailable)
        {
            Assert.Equal((1, 0), (d.TargetedBarriers, d.ProcessWideBarriers));
            Assert.Equal(1, Interlocked.Read(ref tlb.ProgressReads));   // read when posted, never looked at again: no spin
        }
        else Assert.Equal((0, 1), (d.TargetedBarriers, d.ProcessWideBarriers));
    }

    [Fact]
    public void Invalidation_PinnedStalledVcpuOnAnotherCpu_IsShotDownAfterTheSpin_TheBarrierAimedAtItsCpu()
    {
        int cpu = PinnedThread.FirstCpu, other = OtherCpu(cpu);
        if (other < 0) return;   // one CPU: no other CPU to pin it to
        var tlb = QuiescentVcpuHoldingPage4PinnedTo(other, progress: 42);   // never moves: the spin ends once it has looked
        var d = PageOutPage4On(cpu, tlb);
        if (!KeepsCounts) return;
        Assert.Equal(1, d.ShotDown);
        Assert.True(Interlocked.Read(ref tlb.ProgressReads) >= 2, "the invalidator spun for its acknowledgement first");
        Assert.Equal(TargetedBarrier.IsAvailable ? (1L, 0L) : (0L, 1L), (d.TargetedBarriers, d.ProcessWideBarriers));
    }

    [Fact]
    public void Invalidation_PinnedVcpuThatIsTheInvalidatorItself_IsNotTakenAsDescheduled()
    {
        int cpu = PinnedThread.FirstCpu;
        if (cpu < 0) return;
        var tlb = QuiescentVcpuHoldingPage4PinnedTo(cpu, progress: 42);
        // The vCPU's own thread invalidates (a hypercall's page-out): it runs, on this CPU.
        var d = PageOutPage4On(cpu, tlb, onTheInvalidator: () => _vcpu.EnterGuest());
        if (!KeepsCounts) return;
        Assert.Equal(1, d.ShotDown);
        Assert.True(Interlocked.Read(ref tlb.ProgressReads) >= 2, "no shortcut for the invalidator's own vCPU: the spin looked at it");
    }

    [Fact]
    public void Invalidation_PinnedVcpuInsideAnAccessOnTheInvalidatorsCpu_IsWaitedForUntilItAcknowledges() =>
        AssertPinnedVcpuInsideAnAccessIsWaitedFor(pinInvalidator: false);

    /// <summary>
    /// A vCPU pinned to the invalidator's CPU, inside an access (not quiescent): the page-out is shot
    /// down from outside but waits until the vCPU acknowledges, with the invalidator's thread pinned
    /// there by the test alone or, <paramref name="pinInvalidator"/>, through <see cref="ThreadCpuPin"/>.
    /// </summary>
    private void AssertPinnedVcpuInsideAnAccessIsWaitedFor(bool pinInvalidator)
    {
        int cpu = PinnedThread.FirstCpu;
        if (cpu < 0) return;
        var tlb = RunningVcpuHoldingPage4(HostKind.Real);   // not quiescent: it may hold a pointer into the page
        _vcpu.SetPinnedCpu(cpu);
        Exception? failed = null;
        var pageOut = PinnedThread.Start(cpu, () =>
        {
            if (pinInvalidator) Assert.Null(ThreadCpuPin.TryPin(cpu));
            _manager.PageOut(new Gpa(0x4000), 4096);
        }, e => failed = e);
        Assert.False(pageOut.Join(TimeSpan.FromMilliseconds(100)));
        Assert.True(_vcpu.RemoteGeneration < _vcpu.PostedGeneration);
        lock (tlb.ShotDown) Assert.NotEmpty(tlb.ShotDown);
        _vcpu.TakeRequests();
        _vcpu.TakeFlushRanges(new (ulong, ulong)[VcpuLink.MaxPendingRanges]);
        _vcpu.AcknowledgeFlush();
        Assert.True(pageOut.Join(Patience));
        Assert.Null(failed);
        _vcpu.ExitGuest();
        Assert.False(Maps(new Gpa(0x4000), out _));
        AssertNoViolation();
    }

    [Fact]
    public void Invalidation_UnpinnedVcpu_OrOneUnpinnedAmongPinned_UsesTheProcessWideBarrier()
    {
        int cpu = PinnedThread.FirstCpu;
        if (cpu < 0) return;
        var tlb = RunningVcpuHoldingPage4(HostKind.Real);
        tlb.Quiescent = true;
        tlb.ProgressValue = 42;
        _vcpu.SetPinnedCpu(-1);
        var d = PageOutPage4On(cpu, tlb);
        if (KeepsCounts) Assert.Equal((1L, 0L, 1L), (d.ShotDown, d.TargetedBarriers, d.ProcessWideBarriers));

        // A second vCPU holding the page, pinned elsewhere, beside the unpinned one: one barrier must order both.
        int other = OtherCpu(cpu);
        if (other < 0) return;
        var pinned = new VcpuLink(1);
        var pinnedTlb = new ScriptedTlb { Quiescent = true, ProgressValue = 42 };
        pinned.AttachTlb(pinnedTlb);
        pinned.SetPinnedCpu(other);
        _mmu.AttachVcpu(pinned);
        _checker.WatchVcpus(() => [_vcpu, pinned]);
        Touch(4);
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(pinned, new Gpa(0x4000), AccessKind.Read, out _));
        pinned.EnterGuest();
        lock (tlb.ShotDown) tlb.ShotDown.Clear();
        d = PageOutPage4On(cpu, tlb);
        pinned.ExitGuest();
        Assert.Equal(pinned.PostedGeneration, pinned.RemoteGeneration);
        if (KeepsCounts) Assert.Equal((2L, 0L, 1L), (d.ShotDown, d.TargetedBarriers, d.ProcessWideBarriers));
    }
}
