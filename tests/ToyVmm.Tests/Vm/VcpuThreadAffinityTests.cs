using ToyVmm.Mmu.Secondary;
using ToyVmm.Tests.Cli;
using ToyVmm.Vm;
using Xunit;

namespace ToyVmm.Tests.Vm;

/// <summary>Pinned vCPU threads (<see cref="VmConfig.PinVcpus"/>, <c>--pin-vcpus</c>).</summary>
public sealed class VcpuThreadAffinityTests
{
    /// <summary>Runs <paramref name="body"/> on a thread of its own (an affinity, once set, stays with the thread).</summary>
    private static T OnOwnThread<T>(Func<T> body)
    {
        T result = default!;
        var t = new Thread(() => result = body());
        t.Start();
        t.Join();
        return result;
    }

    [Fact]
    public void TryPinCurrentThread_AllowedCpu_LeavesTheThreadOnThatCpuOnly_AndNotItsStarter()
    {
        if (!OperatingSystem.IsLinux()) return;
        int[] before = VcpuThreadAffinity.AllowedCpus(out string? why);
        Assert.Null(why);
        Assert.NotEmpty(before);
        Assert.Equal(before.Order(), before);
        int cpu = before[^1];
        var (refused, allowed, on) = OnOwnThread(() =>
        {
            string? r = VcpuThreadAffinity.TryPinCurrentThread(cpu);
            return (r, VcpuThreadAffinity.AllowedCpus(out _), TargetedBarrier.IsAvailable ? TargetedBarrier.CurrentCpu() : cpu);
        });
        Assert.Null(refused);
        Assert.Equal([cpu], allowed);
        Assert.Equal(cpu, on);
        Assert.Equal(before, VcpuThreadAffinity.AllowedCpus(out _));
    }

    [Theory]
    [InlineData(-1, "out of range")]
    [InlineData(1 << 20, "out of range")]
    public void TryPinCurrentThread_ImpossibleCpu_IsRefusedWithAReason(int cpu, string reason)
    {
        if (!OperatingSystem.IsLinux()) return;
        Assert.Contains(reason, OnOwnThread(() => VcpuThreadAffinity.TryPinCurrentThread(cpu)));
    }

    [Fact]
    public void TryPinCurrentThread_CpuOutsideTheAllowedSet_IsRefused_AndTheThreadKeepsItsSet()
    {
        if (!OperatingSystem.IsLinux()) return;
        int[] allowed = VcpuThreadAffinity.AllowedCpus(out _);
        int outside = Enumerable.Range(0, 1024).First(c => !allowed.Contains(c));
        var (refused, after) = OnOwnThread(() => (VcpuThreadAffinity.TryPinCurrentThread(outside), VcpuThreadAffinity.AllowedCpus(out _)));
        Assert.Contains("refused", refused);
        Assert.Equal(allowed, after);
    }

    [Fact]
    public void Run_PinVcpus_PinsEachVcpuRoundRobinOverTheAllowedCpus_AndUnpinnedByDefault()
    {
        if (!OperatingSystem.IsLinux()) return;
        int[] cpus = VcpuThreadAffinity.AllowedCpus(out _);
        var image = AsmGuest.Build(a => a.hlt());
        foreach (bool pin in new[] { true, false })
        {
            using var vm = VirtualMachine.Create(new VmConfig(AsmGuest.Ram, 3, 1_000_000, PinVcpus: pin), image, new MemoryStream());
            Assert.Equal(VmOutcome.AllHalted, vm.Run().Outcome);
            for (int i = 0; i < 3; i++)
                Assert.Equal(pin ? cpus[i % cpus.Length] : -1, vm.Links[i]!.PinnedCpu);
        }
    }

    [Theory]
    [InlineData("ept")]
    [InlineData("shadow")]
    public void Run_PinnedVcpus_RandomWritesUnderPageOutsWithTheChecker_EndCleanly(string mmu)
    {
        var (code, _, stderr) = RunOutputsTests.Toyvmm.Run(null, "run", GuestFiles.Elf("memrand"), "--memory", "64M", "--host-memory", "16M",
            "--vcpus", "2", "--pin-vcpus", "--mmu", mmu, "--check", "--quiet", "--pageout", "every=2ms,pages=32", "--stats");
        Assert.True(code == 0, $"status {code}: {stderr}");
        Assert.Contains("checker: on, 0 violations", stderr);
        Assert.DoesNotContain("--pin-vcpus:", stderr);   // pinned: nothing was refused
    }
}
