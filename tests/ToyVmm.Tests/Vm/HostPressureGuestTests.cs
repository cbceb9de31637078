using ToyVmm.Loader;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;
using Xunit;
using Xunit.Abstractions;

namespace ToyVmm.Tests.Vm;

/// <summary>
/// Shipped guests run to a correct result while the host pages out hard: host
/// frames at a quarter of guest RAM with the background reclaimer, forced
/// page-outs of random ranges every 2 ms, for the memory guests also DISCARD-like
/// drops of RAM they do not use from another thread (the others may place data
/// anywhere in free RAM), the invariant checker on, 1, 2 and 4 vCPUs.
/// </summary>
public class HostPressureGuestTests(ITestOutputHelper output)
{
    private const ulong Ram = 16UL << 20;

    public static TheoryData<string, int> Matrix()
    {
        var data = new TheoryData<string, int>();
        foreach (var g in new[] { "memseq", "memrand", "memhot", "pageout", "discard", "smp", "pagestorm", "memrand-sse", "kernel" })
            foreach (int v in new[] { 1, 2, 4 })
                data.Add(g, v);
        return data;
    }

    [Theory]
    [MemberData(nameof(Matrix))]
    public void Guest_UnderHostPressureWithChecker_ExitsZeroWithNoViolation(string guest, int vcpus)
    {
        int seed = HashCode.Combine(guest, vcpus) & 0x7fffffff;
        output.WriteLine($"guest {guest}, {vcpus} vCPUs, seed {seed}");
        var image = ElfLoader.LoadFile(GuestFiles.Elf(guest), Ram);
        using var backing = new HostBackedMemory(Ram, vcpus, new GuestMemoryConfig(
            HostMemoryBytes: Ram / 4, Check: true, PageOutIntervalMs: 2, Seed: seed));
        using var console = new MemoryStream();
        using var vm = VirtualMachine.Create(new VmConfig(Ram, vcpus, InstructionLimit: 20_000_000_000), image, console, _ => backing.Memory);
        backing.Checker!.WatchVcpus(() => [.. vm.Links.OfType<VcpuLink>()]);
        backing.Checker.Violated += v => vm.Stop(VmOutcome.InvariantViolation, v.ToString());

        // Drops of memory the memory guests never touch (their working set is the low
        // half of RAM): the 2 MiB below the VMM's reserved top.
        using var stop = new CancellationTokenSource();
        long dropped = 0;
        var dropper = new Thread(() =>
        {
            var rng = new Random(seed);
            var region = new Gpa(Ram - (3UL << 20));
            while (guest.StartsWith("mem") && !stop.Token.WaitHandle.WaitOne(3))
            {
                ulong first = (ulong)rng.Next(0, 500) << Page.Shift;
                dropped += Math.Max(0, backing.Management.Discard(region.Add(first), (ulong)rng.Next(1, 12) << Page.Shift));
            }
        }) { IsBackground = true };
        dropper.Start();
        var result = vm.Run();
        stop.Cancel();
        dropper.Join();
        backing.StopBackground();

        string text = System.Text.Encoding.UTF8.GetString(console.ToArray());
        output.WriteLine(text);
        foreach (var line in backing.Summary()) output.WriteLine(line);
        output.WriteLine($"dropped {dropped} pages of unused RAM");
        Assert.True(result.IsNormalExit, $"{result.Outcome}: {result.Message}");
        Assert.Equal(0, result.GuestStatus);
        Assert.Null(backing.Checker.FirstViolation);
        Assert.True(backing.Checker.Checks > 0);
        if (guest.StartsWith("mem"))
            Assert.True(backing.Host.Stats.PagesWrittenToSwap > 0, "a working set twice the host frame pool must go to swap");
        var inconsistencies = backing.Host.CheckConsistency();
        Assert.True(inconsistencies.Count == 0, string.Join("\n", inconsistencies.Take(20)));
    }
}
