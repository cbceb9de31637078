using System.Diagnostics;
using ToyVmm.Loader;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;

namespace ToyVmm.Bench.Scenario;

/// <summary>
/// <c>make bench</c>'s CPU comparison (<c>cpusuite [runs] [guest...]</c>, also the first section of
/// <c>scenario</c>; <c>tiers</c> is an alias): each cpusuite guest's native twin (the same C built
/// for Linux) run natively and under qemu-user (a translator, the yardstick; left out with a line
/// saying so when qemu-x86_64 is missing), and the guest in ToyVmm's interpreter and translation
/// tier on flat memory, on the EPT MMU, and on the EPT MMU under host pressure (pool a quarter of
/// RAM, a forced page-out every 5 ms). All configurations alternate run by run so that the shared
/// machine's noise hits them alike; medians of wall-clock and of CPU time (the child's user+sys for
/// the native twin and qemu; for ToyVmm this process's over <c>VirtualMachine.Run</c>: the vCPU,
/// the tier's compiler, the host's reclaim and the GC), as MIPS over the guest's retired
/// instruction count (the native twin runs the same code; its own count is not measured), with
/// the ratios to native and to qemu-user (CpuSuiteTable). Then the time to the first instruction
/// in both modes: the whole run of hello, a guest that prints a line and exits.
/// </summary>
public static class CpuSuiteScenario
{
    private const ulong Ram = 64UL << 20;

    public static int Run(string[] args)
    {
        if (!CpuSuiteArgs.TryParse(args, out var parsed, out string? error))
        {
            Console.Error.WriteLine($"cpusuite: {error}");
            return 2;
        }
        string? qemu = ScenarioTools.FindOnPath("qemu-x86_64");
        Console.WriteLine($"# ToyVmm cpusuite: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}, load average {ScenarioTools.LoadAverage()}");
        return Run(parsed, qemu) ? 0 : 1;
    }

    /// <summary>The section itself, for <c>scenario</c> too: false when a guest is not built.</summary>
    internal static bool Run(CpuSuiteArgs args, string? qemu)
    {
        Console.WriteLine(qemu is null
            ? "qemu-user: skipped (qemu-x86_64 is not on the PATH and `make bench` could not install the qemu-user package); its rows and ratios are left out"
            : $"qemu-user: {ScenarioTools.FirstLine(qemu, "--version")} ({qemu}), running the native twins");
        string root = ScenarioTools.RepoRoot();
        foreach (var guest in args.Guests)
            if (!Guest(root, guest, args.Runs, qemu)) return false;
        string hello = Path.Combine(root, "guest", "build", "hello.elf");
        if (!File.Exists(hello))
        {
            Console.Error.WriteLine("hello: not built (run make -C guest)");
            return false;
        }
        foreach (bool tiered in new[] { false, true })
        {
            var ms = Enumerable.Range(0, args.Runs).Select(_ => TimeVm(hello, tiered, "flat").Sample.WallSeconds * 1e3).ToList();
            Console.WriteLine(CpuSuiteTable.FirstInstruction("hello", tiered ? "tiered" : "interpreter", ms));
        }
        Console.WriteLine($"# load average after: {ScenarioTools.LoadAverage()}");
        return true;
    }

    private static bool Guest(string root, string guest, int runs, string? qemu)
    {
        string elf = Path.Combine(root, "guest", "build", guest + ".elf");
        string native = Path.Combine(root, "guest", "build", "native", guest);
        if (!File.Exists(elf) || !File.Exists(native))
        {
            Console.Error.WriteLine($"{guest}: not built (run make -C guest; needs {elf} and {native})");
            return false;
        }
        long instructions = 0;
        var configs = new List<(string Name, Func<CpuSuiteSample> Run)>
        {
            (CpuSuiteTable.Native, () => Sample(ScenarioTools.TimeProcessWithCpu(native, []))),
        };
        if (qemu is not null) configs.Add((CpuSuiteTable.Qemu, () => Sample(ScenarioTools.TimeProcessWithCpu(qemu, [native]))));
        foreach (var memory in CpuSuiteTable.Memories)
            foreach (bool tiered in new[] { false, true })
                configs.Add((CpuSuiteTable.Vm(tiered, memory), () =>
                {
                    var (sample, n) = TimeVm(elf, tiered, memory);
                    instructions = n;
                    return sample;
                }));
        var samples = configs.ToDictionary(c => c.Name, _ => new List<CpuSuiteSample>());
        for (int i = 0; i < runs; i++)
            foreach (var c in configs)
                samples[c.Name].Add(c.Run());
        var rows = configs.Select(c => CpuSuiteTable.Median(c.Name, samples[c.Name])).ToList();
        foreach (var line in CpuSuiteTable.Format(guest, instructions, runs, rows)) Console.WriteLine(line);
        foreach (var line in CpuSuiteTable.Ratios(rows)) Console.WriteLine(line);
        return true;
    }

    private static CpuSuiteSample Sample((double Wall, double Cpu) t) => new(t.Wall, t.Cpu);

    /// <summary>
    /// The guest in ToyVmm, one vCPU: flat memory, the EPT MMU with room for all of RAM, or the EPT
    /// MMU under pressure (pool a quarter of RAM, forced page-outs every 5 ms); wall-clock and this
    /// process's CPU seconds over the run, and the instructions retired.
    /// </summary>
    private static (CpuSuiteSample Sample, long Instructions) TimeVm(string elf, bool tiered, string memory)
    {
        var image = ElfLoader.LoadFile(elf, Ram);
        GuestMemoryConfig? config = memory switch
        {
            "flat" => null,
            "EPT" => new GuestMemoryConfig(Ram + (Ram >> 3)),
            "EPT+pressure" => new GuestMemoryConfig(Ram / 4, PageOutIntervalMs: 5),
            _ => throw new ArgumentException($"unknown memory configuration {memory}", nameof(memory)),
        };
        using var backing = config is null ? null : new HostBackedMemory(Ram, 1, config);
        using var console = new MemoryStream();
        int tier = tiered ? ToyVmm.Cli.RunOptions.DefaultTierThreshold : -1;
        using var vm = VirtualMachine.Create(new VmConfig(Ram, 1, TierThreshold: tier), image, console,
            backing is null ? null : _ => backing.Memory);
        var self = Process.GetCurrentProcess();
        TimeSpan cpu0 = self.TotalProcessorTime;
        var sw = Stopwatch.StartNew();
        var result = vm.Run();
        sw.Stop();
        self.Refresh();
        double cpu = (self.TotalProcessorTime - cpu0).TotalSeconds;
        if (!result.IsNormalExit || result.GuestStatus != 0)
            throw new InvalidOperationException($"{Path.GetFileName(elf)} failed: {result.Outcome} {result.GuestStatus} {result.Message}");
        backing?.StopBackground();
        return (new CpuSuiteSample(sw.Elapsed.TotalSeconds, cpu), result.InstructionsRetired);
    }
}
