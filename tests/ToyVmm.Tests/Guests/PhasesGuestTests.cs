using ToyVmm.Loader;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;
using Xunit;
using Xunit.Abstractions;

namespace ToyVmm.Tests.Guests;

/// <summary>
/// The phases guest on host-backed RAM does what its phase names say: its fill takes a
/// zero-filled host page for every page of its memory, its PAGEOUT writes them all to swap,
/// and its verify brings every one back in, with the invariant checker on.
/// </summary>
public class PhasesGuestTests(ITestOutputHelper output)
{
    private const ulong Ram = 16UL << 20;

    // guest/progs/phases.c uses half of guest RAM by default.
    private const long Pages = (long)(Ram / 2 / 4096);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Phases_OnHostBackedRam_ZeroFillsThenSwapsOutAndInEveryPage(int vcpus)
    {
        var image = ElfLoader.LoadFile(GuestFiles.Elf("phases"), Ram);
        // Host frames for all of RAM: every swap-out and swap-in is the guest's own doing.
        using var backing = new HostBackedMemory(Ram, vcpus, new GuestMemoryConfig(HostMemoryBytes: Ram + (Ram / 8), Check: true));
        using var console = new MemoryStream();
        using var vm = VirtualMachine.Create(new VmConfig(Ram, vcpus, InstructionLimit: 2_000_000_000), image, console, _ => backing.Memory);
        backing.Checker!.WatchVcpus(() => [.. vm.Links.OfType<VcpuLink>()]);
        backing.Checker.Violated += v => vm.Stop(VmOutcome.InvariantViolation, v.ToString());

        var result = vm.Run();
        backing.StopBackground();

        string text = System.Text.Encoding.Latin1.GetString(console.ToArray());
        output.WriteLine(text);
        foreach (var line in backing.Summary()) output.WriteLine(line);
        Assert.True(result.IsNormalExit, $"{result.Outcome}: {result.Message}\n{text}");
        Assert.Equal(0, result.GuestStatus);
        Assert.EndsWith("phases: PASS\n", text);
        Assert.Null(backing.Checker.FirstViolation);
        var stats = backing.Host.Stats;
        Assert.True(stats.ZeroFillFaults >= Pages, $"fill: {stats.ZeroFillFaults} zero-fill faults for {Pages} pages");
        Assert.True(stats.PagesWrittenToSwap >= Pages, $"pageout: {stats.PagesWrittenToSwap} pages written to swap for {Pages}");
        Assert.True(stats.SwapInsFromFile + stats.SwapCacheHits >= Pages,
            $"verify: {stats.SwapInsFromFile} swap-ins and {stats.SwapCacheHits} swap-cache hits for {Pages} pages");
    }
}
