using System.Diagnostics;
using ToyVmm.Loader;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;

namespace ToyVmm.Bench.Scenario;

/// <summary>
/// <c>make bench</c>'s tier comparison: the cpusuite guests natively, under qemu-user (when
/// <c>qemu-x86_64</c> is on the PATH; it runs the native twin), in the interpreter and in the
/// translation tier, on flat memory and on the EPT MMU under host pressure (pool a quarter of
/// RAM, forced page-outs). Runs of the configurations alternate so the shared machine's noise
/// hits them alike; medians. Also the time to the guest's first instruction in both modes.
/// </summary>
public static class TierScenario
{
    private const ulong Ram = 64UL << 20;

    public static int Run(string[] args)
    {
        int runs = args.Length > 0 && int.TryParse(args[0], out int r) ? r : 5;
        string root = ScenarioTools.RepoRoot();
        string? qemu = ScenarioTools.FindOnPath("qemu-x86_64");
        Console.WriteLine($"# ToyVmm tiers: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}, {runs} alternating runs each, medians; qemu-user: {qemu ?? "not installed"}");
        foreach (var guest in new[] { "cpusuite", "cpusuite-sse" })
        {
            string elf = Path.Combine(root, "guest", "build", guest + ".elf");
            string native = Path.Combine(root, "guest", "build", "native", guest);
            if (!File.Exists(elf) || !File.Exists(native))
            {
                Console.Error.WriteLine($"{guest}: not built (run make -C guest)");
                return 1;
            }
            var configs = new (string Name, int Tier, bool Ept)[]
            {
                ("interpreter, flat", -1, false), ("tiered, flat", RunOptionsDefaults.Threshold, false),
                ("interpreter, EPT+pressure", -1, true), ("tiered, EPT+pressure", RunOptionsDefaults.Threshold, true),
            };
            var times = configs.ToDictionary(c => c.Name, _ => new List<double>());
            var nativeTimes = new List<double>();
            var qemuTimes = new List<double>();
            long instructions = 0;
            for (int i = 0; i < runs; i++)
            {
                nativeTimes.Add(ScenarioTools.TimeProcess(native, []));
                if (qemu is not null) qemuTimes.Add(ScenarioTools.TimeProcess(qemu, [native]));
                foreach (var c in configs)
                {
                    var run = TimeGuest(elf, c.Tier, c.Ept);
                    instructions = run.Instructions;
                    times[c.Name].Add(run.Seconds);
                }
            }
            double nativeSec = ScenarioTools.Median(nativeTimes);
            double? qemuSec = qemuTimes.Count > 0 ? ScenarioTools.Median(qemuTimes) : null;
            Console.WriteLine($"{guest}: {instructions / 1e6:F1} M guest instructions");
            Console.WriteLine($"  {"native",-28} {nativeSec * 1e3,9:F1} ms   {instructions / nativeSec / 1e6,8:F0} MIPS");
            if (qemuSec is double q)
                Console.WriteLine($"  {"qemu-user",-28} {q * 1e3,9:F1} ms   {instructions / q / 1e6,8:F0} MIPS   {q / nativeSec,6:F1}x native");
            foreach (var c in configs)
            {
                double sec = ScenarioTools.Median(times[c.Name]);
                string vsQemu = qemuSec is double qq ? $"   {sec / qq,6:F1}x qemu-user" : "";
                Console.WriteLine($"  {c.Name,-28} {sec * 1e3,9:F1} ms   {instructions / sec / 1e6,8:F1} MIPS   {sec / nativeSec,6:F0}x native{vsQemu}");
            }
            double interp = ScenarioTools.Median(times["interpreter, flat"]), tiered = ScenarioTools.Median(times["tiered, flat"]);
            Console.WriteLine($"  tiered/interpreter MIPS (flat) {interp / tiered:F2}x; EPT+pressure/flat MIPS, tiered {ScenarioTools.Median(times["tiered, flat"]) / ScenarioTools.Median(times["tiered, EPT+pressure"]):P0}");
        }
        // Time to the first guest instruction: VM creation to the first port write of hello
        // is dominated by the VMM's start; the tier adds nothing before the first block (it
        // compiles blocks only after they have run, off the vCPU thread).
        string hello = Path.Combine(root, "guest", "build", "hello.elf");
        foreach (int tier in new[] { -1, RunOptionsDefaults.Threshold })
        {
            var ms = Enumerable.Range(0, runs).Select(_ => TimeGuest(hello, tier, false).Seconds * 1e3).ToList();
            Console.WriteLine($"hello (whole run, {(tier < 0 ? "interpreter" : "tiered")}): {ScenarioTools.Median(ms):F2} ms median");
        }
        return 0;
    }

    private static class RunOptionsDefaults
    {
        public const int Threshold = ToyVmm.Cli.RunOptions.DefaultTierThreshold;
    }

    private sealed record GuestRun(double Seconds, long Instructions);

    private static GuestRun TimeGuest(string elf, int tier, bool ept)
    {
        var image = ElfLoader.LoadFile(elf, Ram);
        using var backing = ept ? new HostBackedMemory(Ram, 1, new GuestMemoryConfig(Ram / 4, PageOutIntervalMs: 5)) : null;
        using var console = new MemoryStream();
        using var vm = VirtualMachine.Create(new VmConfig(Ram, 1, TierThreshold: tier), image, console,
            backing is null ? null : _ => backing.Memory);
        var sw = Stopwatch.StartNew();
        var result = vm.Run();
        sw.Stop();
        if (!result.IsNormalExit || result.GuestStatus != 0)
            throw new InvalidOperationException($"{Path.GetFileName(elf)} failed: {result.Outcome} {result.GuestStatus} {result.Message}");
        backing?.StopBackground();
        return new GuestRun(sw.Elapsed.TotalSeconds, result.InstructionsRetired);
    }
}
