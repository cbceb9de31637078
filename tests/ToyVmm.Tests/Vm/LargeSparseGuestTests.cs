using System.Diagnostics;
using ToyVmm.Loader;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;
using Xunit;
using Xunit.Abstractions;

namespace ToyVmm.Tests.Vm;

/// <summary>
/// Guest RAM many times larger than the host's frames, touched thinly: the sparse
/// guest writes one page in 100 over all of its free memory, pages every touched page
/// out, discards a quarter, rewrites a third and checks every page after each step,
/// with the invariant checker on. Untouched RAM must cost no frames, no swap and no
/// page tables; the VMM's peak memory is bounded by the frames plus the tables of
/// what was touched.
/// </summary>
public class LargeSparseGuestTests(ITestOutputHelper output)
{
    private void RunSparse(ulong ram, ulong hostMemory)
    {
        var image = ElfLoader.LoadFile(GuestFiles.Elf("sparse"), ram);
        using var backing = new HostBackedMemory(ram, 1, new GuestMemoryConfig(HostMemoryBytes: hostMemory, Check: true));
        using var console = new MemoryStream();
        using var vm = VirtualMachine.Create(new VmConfig(ram, 1, InstructionLimit: 20_000_000_000), image, console, _ => backing.Memory);
        backing.Checker!.WatchVcpus(() => [.. vm.Links.OfType<VcpuLink>()]);
        backing.Checker.Violated += v => vm.Stop(VmOutcome.InvariantViolation, v.ToString());
        var result = vm.Run();
        backing.StopBackground();

        string text = System.Text.Encoding.UTF8.GetString(console.ToArray());
        output.WriteLine(text);
        foreach (var line in backing.Summary()) output.WriteLine(line);
        Assert.True(result.IsNormalExit, $"{result.Outcome}: {result.Message}");
        Assert.Equal(0, result.GuestStatus);
        Assert.Contains("sparse: PASS", text);
        Assert.Null(backing.Checker.FirstViolation);
        Assert.True(backing.Host.Stats.PagesWrittenToSwap > 0, "the touched pages went to swap");

        // One page in 100 was touched: swap bookkeeping for a small part of the file only
        // (a chunk covers 4096 slots), and no more swap slots than touched pages.
        ulong touched = ram / ToyVmm.Mmu.Page.Size / 100 + 1024;
        ulong chunksForAll = (ram / ToyVmm.Mmu.Page.Size + 4095) / 4096;
        output.WriteLine($"swap: {backing.Host.Swap.SlotsInUse} slots in use, {backing.Host.Swap.BookkeepingChunks} of {chunksForAll} bookkeeping chunks");
        Assert.True((ulong)backing.Host.Swap.SlotsInUse <= touched, $"{backing.Host.Swap.SlotsInUse} slots in use for about {touched} touched pages");
        Assert.True((ulong)backing.Host.Swap.BookkeepingChunks * 10 <= chunksForAll,
            $"{backing.Host.Swap.BookkeepingChunks} of {chunksForAll} swap bookkeeping chunks made for a guest that touched 1%");
        var inconsistencies = backing.Host.CheckConsistency();
        Assert.True(inconsistencies.Count == 0, string.Join("\n", inconsistencies.Take(20)));
    }

    [Fact]
    public void SparseGuest_4GiBOn16MiBFramesWithChecker_DataKeptAfterPageOutsAndDiscards() => RunSparse(4UL << 30, 16UL << 20);

    [Fact]
    [Trait("Category", "Long")]
    public void SparseGuest_64GiBOn1GiBFramesWithChecker_DataKeptAfterPageOutsAndDiscards() => RunSparse(64UL << 30, 1UL << 30);

    /// <summary>
    /// The toyvmm program running a 64 GiB guest on 1 GiB of frames that touches 1% of
    /// its RAM, as a process of its own: its peak resident memory (VmHWM) stays within the
    /// frame pool plus 640 MiB (the runtime, the host and EPT page tables of a spread
    /// that puts a page into every 2 MiB of RAM, and the checker's map). Without sparse
    /// bookkeeping the swap space alone would take 13 bytes per slot of 64 GiB.
    /// </summary>
    [Fact]
    [Trait("Category", "Long")]
    public async Task Program_64GiBGuestTouching1Percent_PeakMemoryWithinFramesPlusTables()
    {
        var psi = ToyvmmProcess.StartInfo("run", GuestFiles.Elf("sparse"), "--memory", "64G", "--host-memory", "1G", "--quiet");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        long peakKb = 0;
        var deadline = Stopwatch.StartNew();
        while (!p.WaitForExit(50))
        {
            peakKb = Math.Max(peakKb, HighWaterMarkKb(p.Id));
            if (deadline.Elapsed > TimeSpan.FromMinutes(5))
            {
                p.Kill(entireProcessTree: true);
                throw new Xunit.Sdk.XunitException("toyvmm did not end");
            }
        }
        await p.WaitForExitAsync();
        string so = await stdout, se = await stderr;
        output.WriteLine(so);
        output.WriteLine(se);
        output.WriteLine($"peak resident memory {peakKb >> 10} MiB");
        Assert.Equal(0, p.ExitCode);
        Assert.Contains("sparse: PASS", so);
        Assert.True(peakKb > 0, "the peak was read from /proc");
        Assert.True(peakKb << 10 <= (1L << 30) + (640L << 20), $"peak resident memory {peakKb >> 10} MiB");
    }

    /// <summary>The process's peak resident set (VmHWM) in KiB, or 0 once it has gone.</summary>
    private static long HighWaterMarkKb(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
        }
        catch (IOException) { }
        return 0;
    }
}
