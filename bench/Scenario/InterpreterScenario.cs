using System.Diagnostics;
using ToyVmm.Loader;
using ToyVmm.Vm;

namespace ToyVmm.Bench.Scenario;

/// <summary>
/// <c>interp [runs] [guest...]</c>: the interpreter alone (<c>--cpu interpreter</c>, flat memory,
/// one vCPU) on the cpusuite guests, in-process after one warm-up run per guest, so the JIT has
/// compiled the handlers. Prints per-run wall-clock MIPS and process-CPU MIPS (user + system time
/// of this process around <c>VirtualMachine.Run</c>) and their medians. Meant to be run for two
/// builds alternately (bench/RESULTS.md, interpreter section); on a shared machine the CPU-time
/// figure is the less disturbed one.
/// </summary>
public static class InterpreterScenario
{
    private const ulong Ram = 64UL << 20;

    public static int Run(string[] args)
    {
        if (!CpuSuiteArgs.TryParse(args, out var parsed, out string? error))
        {
            Console.Error.WriteLine($"interp: {error}");
            return 2;
        }
        int runs = parsed.Runs;
        var guests = parsed.Guests;
        string root = ScenarioTools.RepoRoot();
        foreach (var guest in guests)
        {
            string elf = Path.Combine(root, "guest", "build", guest + ".elf");
            if (!File.Exists(elf))
            {
                Console.Error.WriteLine($"{guest}: not built (run make -C guest)");
                return 1;
            }
            TimeGuest(elf);   // warm-up: JIT
            var wall = new List<double>();
            var cpu = new List<double>();
            for (int i = 0; i < runs; i++)
            {
                var (w, c, n) = TimeGuest(elf);
                wall.Add(n / w / 1e6);
                cpu.Add(n / c / 1e6);
            }
            Console.WriteLine($"{guest}: wall MIPS median {ScenarioTools.Median(wall),7:F1} [{string.Join(" ", wall.Select(x => x.ToString("F0")))}]" +
                              $"   CPU MIPS median {ScenarioTools.Median(cpu),7:F1} [{string.Join(" ", cpu.Select(x => x.ToString("F0")))}]");
        }
        return 0;
    }

    private static (double Wall, double Cpu, long Instructions) TimeGuest(string elf)
    {
        var image = ElfLoader.LoadFile(elf, Ram);
        using var console = new MemoryStream();
        using var vm = VirtualMachine.Create(new VmConfig(Ram, 1, TierThreshold: -1), image, console, null);
        var proc = Process.GetCurrentProcess();
        proc.Refresh();
        var cpu0 = proc.TotalProcessorTime;
        var sw = Stopwatch.StartNew();
        var result = vm.Run();
        sw.Stop();
        proc.Refresh();
        var cpu = proc.TotalProcessorTime - cpu0;
        if (!result.IsNormalExit || result.GuestStatus != 0)
            throw new InvalidOperationException($"{Path.GetFileName(elf)} failed: {result.Outcome} {result.GuestStatus} {result.Message}");
        return (sw.Elapsed.TotalSeconds, cpu.TotalSeconds, result.InstructionsRetired);
    }
}
