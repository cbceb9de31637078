using System.Diagnostics;
using ToyVmm.Loader;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;

namespace ToyVmm.Bench.Scenario;

/// <summary>
/// <c>make bench</c>'s scenarios: the same guest run natively (its Linux
/// build), under qemu-user (the native build; left out with a line saying so when
/// qemu-x86_64 is missing), in the interpreter and in the translation tier, on flat
/// memory and on the host-backed EPT MMU; guest MIPS, the ratios to native and to
/// qemu-user, and the MMU's fault and invalidation
/// latencies under host pressure. Medians of several runs; the machine is
/// shared and noisy, so read ratios rather than absolute figures.
/// </summary>
public static class ScenarioRunner
{
    private const ulong Ram = 64UL << 20;

    public static int Run(string[] args)
    {
        int runs = args.Length > 0 && int.TryParse(args[0], out int r) ? r : 5;
        string root = ScenarioTools.RepoRoot();
        Console.WriteLine($"# ToyVmm scenarios: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}, {runs} runs each, medians");
        string? qemu = ScenarioTools.FindOnPath("qemu-x86_64");
        Console.WriteLine(qemu is null
            ? "qemu-user: skipped (qemu-x86_64 is not on the PATH and `make bench` could not install the qemu-user package); its column is left out"
            : $"qemu-user: {FirstLine(qemu, "--version")} ({qemu}), running the native twins");
        foreach (var guest in new[] { "cpusuite", "cpusuite-sse" })
            if (!CpuSuite(root, guest, runs, qemu)) return 1;
        foreach (var (guest, vcpus) in new[] { ("memrand", 1), ("memrand", 2), ("memhot", 2) })
        {
            string elf = Path.Combine(root, "guest", "build", guest + ".elf");
            var res = TimeGuest(elf, new GuestMemoryConfig(Ram / 4, PageOutIntervalMs: 5), vcpus, verbose: true);
            Console.WriteLine($"{guest}, {vcpus} vCPU(s), host pool = RAM/4, forced page-outs every 5 ms: {res.Seconds * 1e3:F0} ms, {res.Instructions / res.Seconds / 1e6:F1} MIPS");
            foreach (var line in res.Summary) Console.WriteLine("  " + line);
        }
        MeasuringCost(root, runs);
        return 0;
    }

    /// <summary>
    /// One cpusuite guest side by side: its native twin (the same C, built for Linux) run natively
    /// and under qemu-user (a translator, the yardstick), and the guest in ToyVmm's interpreter and
    /// translation tier on flat memory and in the interpreter on the EPT MMU. The configurations
    /// alternate run by run so the shared machine's noise hits them alike; medians of wall-clock
    /// time and of CPU time (the child's user+sys; for ToyVmm the whole process's CPU time over the
    /// run: the vCPU, the tier's compiler and the GC), both as MIPS over the guest's retired
    /// instruction count (the native twin runs the same code; its own count is not measured).
    /// </summary>
    private static bool CpuSuite(string root, string guest, int runs, string? qemu)
    {
        string elf = Path.Combine(root, "guest", "build", guest + ".elf");
        string native = Path.Combine(root, "guest", "build", "native", guest);
        if (!File.Exists(elf) || !File.Exists(native))
        {
            Console.Error.WriteLine($"{guest}: not built (run make -C guest)");
            return false;
        }
        int tiered = ToyVmm.Cli.RunOptions.DefaultTierThreshold;
        var configs = new List<(string Name, Func<(double Wall, double Cpu, long Instructions)> Run)>
        {
            ("native", () => { var t = ScenarioTools.TimeProcessWithCpu(native, []); return (t.Wall, t.Cpu, 0); }),
        };
        if (qemu is not null) configs.Add(("qemu-user", () => { var t = ScenarioTools.TimeProcessWithCpu(qemu, [native]); return (t.Wall, t.Cpu, 0); }));
        configs.Add(("interpreter, flat", () => TimeVm(elf, null, -1)));
        configs.Add(("tiered, flat", () => TimeVm(elf, null, tiered)));
        configs.Add(("interpreter, EPT", () => TimeVm(elf, new GuestMemoryConfig(Ram + (Ram >> 3)), -1)));
        var wall = configs.ToDictionary(c => c.Name, _ => new List<double>());
        var cpu = configs.ToDictionary(c => c.Name, _ => new List<double>());
        long instructions = 0;
        for (int i = 0; i < runs; i++)
            foreach (var c in configs)
            {
                var (w, t, n) = c.Run();
                wall[c.Name].Add(w);
                cpu[c.Name].Add(t);
                if (n > 0) instructions = n;
            }
        double Med(Dictionary<string, List<double>> d, string name) => ScenarioTools.Median(d[name]);
        Console.WriteLine($"{guest}: {instructions / 1e6:F1} M guest instructions; wall-clock | CPU time (medians of {runs})");
        foreach (var c in configs)
        {
            double w = Med(wall, c.Name), t = Med(cpu, c.Name);
            string vsQemu = qemu is null || c.Name == "native" ? "" : c.Name == "qemu-user" ? "" :
                $"   {w / Med(wall, "qemu-user"),5:F1}x | {t / Med(cpu, "qemu-user"),5:F1}x qemu-user";
            string vsNative = c.Name == "native" ? "" : $"   {w / Med(wall, "native"),5:F1}x | {t / Med(cpu, "native"),5:F1}x native";
            Console.WriteLine($"  {c.Name,-18} {w * 1e3,8:F1} | {t * 1e3,8:F1} ms  {instructions / w / 1e6,7:F0} | {instructions / t / 1e6,7:F0} MIPS{vsNative}{vsQemu}");
        }
        Console.WriteLine($"  EPT/flat MIPS (interpreter, wall) {Med(wall, "interpreter, flat") / Med(wall, "interpreter, EPT"):P0}; tiered/interpreter MIPS (CPU) {Med(cpu, "interpreter, flat") / Med(cpu, "tiered, flat"):F2}x");
        return true;
    }

    private static string FirstLine(string path, string arg)
    {
        var psi = new ProcessStartInfo(path, arg) { RedirectStandardOutput = true, UseShellExecute = false };
        using var p = Process.Start(psi)!;
        string line = p.StandardOutput.ReadLine() ?? "";
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return line.Trim();
    }

    /// <summary>The guest in ToyVmm: wall-clock and this process's CPU seconds over the run, and the instructions retired.</summary>
    private static (double Wall, double Cpu, long Instructions) TimeVm(string elf, GuestMemoryConfig? memory, int tier)
    {
        var self = Process.GetCurrentProcess();
        TimeSpan cpu0 = self.TotalProcessorTime;
        var run = TimeGuest(elf, memory, tier: tier);
        self.Refresh();
        return (run.Seconds, (self.TotalProcessorTime - cpu0).TotalSeconds, run.Instructions);
    }

    /// <summary>
    /// What measuring costs (the instrument's budget: guest MIPS and fault p50 within 5%
    /// with the report's measurements on, within 20% with the trace on): the same guests
    /// with the host and the secondary MMU recording nothing, recording histograms
    /// (what --report/--stats read), and recording the timeline as well (--trace).
    /// Runs of the three modes alternate so that the machine's noise hits them alike.
    /// </summary>
    private static void MeasuringCost(string root, int runs)
    {
        Console.WriteLine("# measuring cost: off = nothing recorded, report = histograms, trace = histograms + timeline (4M events); medians");
        var modes = new (string Name, bool Measure, long Trace)[] { ("off", false, 0), ("report", true, 0), ("trace", true, 4_000_000) };
        foreach (var (guest, vcpus, pressure) in new[] { ("cpusuite", 1, false), ("memrand", 1, true), ("memhot", 2, true) })
        {
            string elf = Path.Combine(root, "guest", "build", guest + ".elf");
            var results = modes.ToDictionary(m => m.Name, _ => new List<GuestRun>());
            for (int i = 0; i < runs; i++)
                foreach (var m in modes)
                {
                    var config = pressure
                        ? new GuestMemoryConfig(Ram / 4, PageOutIntervalMs: 5, TraceLimit: m.Trace, Measure: m.Measure)
                        : new GuestMemoryConfig(Ram + (Ram >> 3), TraceLimit: m.Trace, Measure: m.Measure);
                    results[m.Name].Add(TimeGuest(elf, config, vcpus));
                }
            double offMips = ScenarioTools.Median(results["off"].Select(r => r.Instructions / r.Seconds / 1e6));
            Console.WriteLine($"{guest}, {vcpus} vCPU(s){(pressure ? ", host pool = RAM/4, forced page-outs every 5 ms" : ", no host pressure")}:");
            foreach (var m in modes)
            {
                var rs = results[m.Name];
                double mips = ScenarioTools.Median(rs.Select(r => r.Instructions / r.Seconds / 1e6));
                string faults = m.Measure
                    ? $"fault p50 {ScenarioTools.Median(rs.Select(r => r.FaultP50Ns)),7:F0} ns (present {ScenarioTools.Median(rs.Select(r => r.PresentP50Ns)),5:F0} ns)"
                    : "fault p50       (not measured)";
                Console.WriteLine($"  {m.Name,-7} {mips,8:F1} MIPS  {mips / offMips,6:P0} of off   {faults}");
            }
        }
    }

    private sealed record GuestRun(double Seconds, long Instructions, IReadOnlyList<string> Summary, double FaultP50Ns = 0, double PresentP50Ns = 0);

    private static GuestRun TimeGuest(string elf, GuestMemoryConfig? memory, int vcpus = 1, bool verbose = false, int tier = -1)
    {
        var image = ElfLoader.LoadFile(elf, Ram);
        using var backing = memory is null ? null : new HostBackedMemory(Ram, vcpus, memory);
        using var console = new MemoryStream();
        using var vm = VirtualMachine.Create(new VmConfig(Ram, vcpus, TierThreshold: tier), image, console,
            backing is null ? null : _ => backing.Memory,
            measurements: backing is not null && memory!.Measure ? backing.Measurements : null);
        var sw = Stopwatch.StartNew();
        var result = vm.Run();
        sw.Stop();
        if (!result.IsNormalExit || result.GuestStatus != 0)
            throw new InvalidOperationException($"{Path.GetFileName(elf)} failed: {result.Outcome} {result.GuestStatus} {result.Message}");
        backing?.StopBackground();
        double faultP50 = 0, presentP50 = 0;
        if (backing is not null && memory!.Measure)
        {
            var total = backing.Snapshot().Total;
            var all = ToyVmm.Mmu.Metrics.LatencyScale.NewHistogram();
            foreach (var h in total.Faults.Values) all.Add(h);
            faultP50 = all.TotalCount == 0 ? 0 : all.GetValueAtPercentile(50);
            var present = total.Faults[ToyVmm.Mmu.Metrics.FaultKind.Present];
            presentP50 = present.TotalCount == 0 ? 0 : present.GetValueAtPercentile(50);
        }
        return new GuestRun(sw.Elapsed.TotalSeconds, result.InstructionsRetired, backing is null || !verbose ? [] : [.. backing.Summary()], faultP50, presentP50);
    }
}
