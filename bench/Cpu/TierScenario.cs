using System.Diagnostics;
using ToyVmm.Bench.Scenario;
using ToyVmm.Loader;
using ToyVmm.Vm;

namespace ToyVmm.Bench.Cpu;

/// <summary>
/// <c>tier [runs] [guest...]</c>: the cpusuite guests in-process on flat memory, one vCPU,
/// interpreted and tiered (default threshold) alternating run by run after one warm-up run of
/// each, so the VMM's own code is compiled (<c>interp</c>: the interpreted runs only); per run and as medians, wall-clock MIPS and
/// process-CPU MIPS (user + system of this process over <c>VirtualMachine.Run</c>: the vCPU and
/// the tier's compiler thread). Each run is a fresh VM, so every tiered run compiles its blocks
/// again. Shorter than <c>cpusuite</c>, for comparing two builds run alternately
/// (bench/RESULTS.md); with TOYVMM_TIER_PROFILE=1 the tier's counters are printed at exit (its
/// timeline in milliseconds since each run's start), with TOYVMM_BENCH_TIERED_ONLY=1 only the
/// tiered runs are made (for perf).
/// </summary>
public static class TierScenario
{
    private const ulong Ram = 64UL << 20;

    /// <param name="interpreterOnly">The <c>interp</c> command: the interpreted runs only.</param>
    public static int Run(string[] args, bool interpreterOnly = false)
    {
        string command = interpreterOnly ? "interp" : "tier";
        if (!CpuSuiteArgs.TryParse(args, out var parsed, out string? error))
        {
            Console.Error.WriteLine($"{command}: {error}");
            return 2;
        }
        bool[] tiers = interpreterOnly ? [false] : TieredOnly ? [true] : [false, true];
        string root = ScenarioTools.RepoRoot();
        Console.WriteLine($"# {command}: load average {ScenarioTools.LoadAverage()}");
        foreach (var guest in parsed.Guests)
        {
            string elf = Path.Combine(root, "guest", "build", guest + ".elf");
            if (!File.Exists(elf))
            {
                Console.Error.WriteLine($"{guest}: not built (run make -C guest)");
                return 1;
            }
            foreach (bool tiered in tiers)
            {
                TimeGuest(elf, tiered);   // warm-up of the VMM's own code
                Results[tiered] = (new List<double>(), new List<double>());
            }
            for (int i = 0; i < parsed.Runs; i++)
                foreach (bool tiered in tiers)
                {
                    var (w, c, n) = TimeGuest(elf, tiered);
                    Results[tiered].Wall.Add(n / w / 1e6);
                    Results[tiered].Cpu.Add(n / c / 1e6);
                }
            foreach (bool tiered in tiers)
            {
                var (wall, cpu) = Results[tiered];
                Console.WriteLine($"{guest} {(tiered ? "tiered" : "interpreter"),-11}: wall MIPS median {ScenarioTools.Median(wall),6:F0} [{string.Join(" ", wall.Select(x => x.ToString("F0")))}]" +
                                  $"   CPU MIPS median {ScenarioTools.Median(cpu),6:F0} [{string.Join(" ", cpu.Select(x => x.ToString("F0")))}]");
            }
        }
        Console.WriteLine($"# load average after: {ScenarioTools.LoadAverage()}");
        return 0;
    }

    private static readonly Dictionary<bool, (List<double> Wall, List<double> Cpu)> Results = new();

    /// <summary>TOYVMM_BENCH_TIER_THRESHOLD=N: the tiered runs at threshold N instead of the default (for measuring it).</summary>
    private static readonly int Threshold =
        int.TryParse(Environment.GetEnvironmentVariable("TOYVMM_BENCH_TIER_THRESHOLD"), out int t) && t > 0 ? t : ToyVmm.Cli.RunOptions.DefaultTierThreshold;

    /// <summary>TOYVMM_BENCH_TIERED_ONLY=1: tiered runs only (a profile of the tier without the interpreter's runs).</summary>
    private static readonly bool TieredOnly = Environment.GetEnvironmentVariable("TOYVMM_BENCH_TIERED_ONLY") == "1";

    private static (double Wall, double Cpu, long Instructions) TimeGuest(string elf, bool tiered)
    {
        var image = ElfLoader.LoadFile(elf, Ram);
        using var console = new MemoryStream();
        int tier = tiered ? Threshold : -1;
        using var vm = VirtualMachine.Create(new VmConfig(Ram, 1, TierThreshold: tier), image, console, null);
        var proc = Process.GetCurrentProcess();
        proc.Refresh();
        var cpu0 = proc.TotalProcessorTime;
        var sw = Stopwatch.StartNew();
        if (ToyVmm.Cpu.Tier.TierProfile.On)
        {
            ToyVmm.Cpu.Tier.TierProfile.MarkTicks = ToyVmm.Cpu.Tier.TierProfile.Clock.ElapsedTicks;
            ToyVmm.Cpu.Tier.TierProfile.Timeline.Add($"---- run {(tiered ? "tiered" : "interpreter")}");
        }
        var result = vm.Run();
        if (ToyVmm.Cpu.Tier.TierProfile.On)
            ToyVmm.Cpu.Tier.TierProfile.Timeline.Add($"---- end {sw.Elapsed.TotalMilliseconds:F1} ms");
        sw.Stop();
        proc.Refresh();
        var cpu = proc.TotalProcessorTime - cpu0;
        if (!result.IsNormalExit || result.GuestStatus != 0)
            throw new InvalidOperationException($"{Path.GetFileName(elf)} failed: {result.Outcome} {result.GuestStatus} {result.Message}");
        return (sw.Elapsed.TotalSeconds, cpu.TotalSeconds, result.InstructionsRetired);
    }
}
