using Iced.Intel;
using ToyVmm.Cpu;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// A pinned vCPU (<see cref="VcpuLink.PinnedCpu"/>) parked mid-access, judged by an invalidator
/// pinned to its CPU or to another one: the barrier aimed at the vCPU's CPU, the same verdicts as
/// with the process-wide barrier; the slot column that finds a range's entries from outside; the
/// tripwire of a vCPU found off its CPU.
/// </summary>
public sealed unsafe partial class TlbShootdownTests
{
    private static int[] Cpus => VcpuThreadAffinity.AllowedCpus(out _);

    /// <summary>Run <paramref name="body"/> on a thread pinned to <paramref name="cpu"/> (rethrows its failure).</summary>
    private static void OnCpu(int cpu, Action body)
    {
        Exception? failed = null;
        var t = new Thread(() =>
        {
            try
            {
                Assert.Null(VcpuThreadAffinity.TryPinCurrentThread(cpu));
                body();
            }
            catch (Exception e) { failed = e; }
        });
        t.Start();
        t.Join();
        if (failed is not null) throw new InvalidOperationException("the pinned thread failed", failed);
    }

    [Theory]
    [InlineData(false)]   // the vCPU is pinned to the invalidator's CPU: not running, no spin, no barrier
    [InlineData(true)]    // pinned to the other CPU: the barrier interrupts that CPU
    public void FlushLocked_PinnedVcpuParkedInsideAStoreToPageA1_IsShotDownForPageA_AndWaitedForOnPageA1(bool otherCpu)
    {
        int[] cpus = Cpus;
        if (cpus.Length == 0 || otherCpu && cpus.Length < 2) return;   // not Linux, or one CPU
        int here = cpus[0], there = otherCpu ? cpus[1] : here;
        var (f, cpu, b) = RanMovsThenPush();
        using (f)
        {
            const ulong A = DataGfn;
            VcpuLink[] vcpus = [cpu.Link];
            cpu.Link.SetPinnedCpu(there);
            cpu.Link.EnterGuest();                        // in guest mode, descheduled inside op 2's store to page A + 1
            Park(cpu, b, 2, CpuFixture.DataBase + 0x1000);
            var counts = new ShootdownCounts();
            OnCpu(here, () => VcpuShootdown.FlushLocked(vcpus, null, ref counts, ulong.MaxValue, A, A));
            Assert.Equal(1, counts.ShotDown);
            // The invalidator pinned itself (ThreadCpuPin): beside the vCPU it needs no barrier at all.
            Assert.Equal(otherCpu ? (TargetedBarrier.IsAvailable ? (1L, 0L, 0L) : (0L, 1L, 0L)) : (0L, 0L, 1L),
                (counts.TargetedBarriers, counts.ProcessWideBarriers, counts.SameCpu));
            Assert.Equal(cpu.Link.PostedGeneration, cpu.Link.RemoteGeneration);
            Assert.False(cpu.Maps(A, HostPage(f, CpuFixture.DataBase)));
            var onA1 = FlushOfA1WaitsUntilTheParkedVcpuAcknowledges(cpu, A, flush => OnCpu(here, flush));
            Assert.Equal(1, onA1.Waited);
            Assert.Equal(0, onA1.ShotDown);
            cpu.Link.ExitGuest();
        }
    }

    [Fact]
    public void FlushLocked_PinnedVcpuParkedInACheckedLoadOfThePage_IsDoneFromOutside_OnEitherCpu()
    {
        int[] cpus = Cpus;
        if (cpus.Length == 0) return;
        var (f, cpu, b) = RanMovsThenPush();
        using (f)
        {
            const ulong A = DataGfn;
            VcpuLink[] vcpus = [cpu.Link];
            cpu.Link.EnterGuest();
            Park(cpu, b, 1, CpuFixture.DataBase);         // inside op 1's load of page A itself
            foreach (int there in cpus.Take(2))
            {
                cpu.Link.SetPinnedCpu(there);
                var counts = new ShootdownCounts();
                OnCpu(cpus[0], () => VcpuShootdown.FlushLocked(vcpus, null, ref counts, ulong.MaxValue, A, A));
                Assert.Equal(1, counts.ShotDown);
                Assert.Equal(cpu.Link.PostedGeneration, cpu.Link.RemoteGeneration);
            }
            cpu.Link.ExitGuest();
        }
    }

    [Fact]
    public void ShootDown_RangeWiderThanTheSlotColumn_DropsEveryEntryOfIt()
    {
        var (f, cpu) = RanTouchingTwoPages();
        using (f)
        {
            cpu.ShootDown(0, ulong.MaxValue - 1);         // frames mod 2^32 cannot tell this range: both arrays scanned
            Assert.False(cpu.Maps(DataGfn, HostPage(f, CpuFixture.DataBase)));
            Assert.False(cpu.Maps(DataGfn + 1, HostPage(f, CpuFixture.DataBase + 0x1000)));
        }
    }

    [Fact]
    public void ShootDown_FrameSharingTheColumnValueOfARangeFrame_KeepsItsEntry()
    {
        var (f, cpu) = RanTouchingTwoPages();
        using (f)
        {
            // 2^32 frames above page A: the same column value, another frame; its entry (page A's) stays.
            cpu.ShootDown(DataGfn + (1UL << 32), DataGfn + (1UL << 32));
            Assert.True(cpu.Maps(DataGfn, HostPage(f, CpuFixture.DataBase)));
            cpu.ShootDown(DataGfn, DataGfn + 1);
            Assert.False(cpu.Maps(DataGfn, HostPage(f, CpuFixture.DataBase)));
            Assert.False(cpu.Maps(DataGfn + 1, HostPage(f, CpuFixture.DataBase + 0x1000)));
        }
    }

    [Fact]
    public void ServiceRequests_PinnedVcpuFoundOnAnotherCpu_UnpinsItsLink_AndSaysWhere()
    {
        int[] cpus = Cpus;
        if (cpus.Length < 2 || !TargetedBarrier.IsAvailable) return;   // the tripwire reads the CPU through the barrier's sched_getcpu
        using var f = new CpuFixture();
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a => a.hlt()));
        var cpu = f.NewVcpu();
        cpu.Link.SetPinnedCpu(cpus[1]);
        VcpuExit exit = default;
        OnCpu(cpus[0], () => exit = cpu.Run());        // its affinity "changed from outside": it runs on cpus[0]
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(-1, cpu.Link.PinnedCpu);
        Assert.Equal(cpus[0], cpu.MovedOffPinnedCpu);

        cpu.Link.SetPinnedCpu(cpus[0]);                 // on its own CPU: left pinned
        cpu.Rip = CpuFixture.CodeBase;
        OnCpu(cpus[0], () => exit = cpu.Run());
        Assert.Equal(cpus[0], cpu.Link.PinnedCpu);
    }

    [Fact]
    public void Kick_SetsTheChainLimitToZero_AndARunningVcpuStillAcknowledgesAndRunsOn()
    {
        using var f = new CpuFixture();
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a =>
        {
            var l = a.CreateLabel();
            a.Label(ref l);
            a.add(rax, 1);
            a.jmp(l);
        }));
        var cpu = f.NewVcpu();
        cpu.State->ChainLimit = 1000;
        cpu.Kick();
        Assert.Equal(0, cpu.State->ChainLimit);        // its next chain check ends the chain
        long ticket = -1;
        var t = new Thread(() =>
        {
            while (cpu.Link.Mode != VcpuMode.InGuest) Thread.Yield();
            while ((ticket = cpu.Link.RequestFlush(DataGfn, DataGfn)) < 0) Thread.Yield();
            cpu.Kick();
            cpu.Link.WaitForFlush(ticket);
            cpu.Link.RequestStop();
        });
        t.Start();
        Assert.Equal(VcpuExitKind.StopRequested, cpu.Run().Kind);
        t.Join();
        Assert.True(cpu.Link.IsFlushed(ticket));
        Assert.True(cpu.State->ChainLimit > 0);         // a chain after the kick set its own limit again
    }
}
