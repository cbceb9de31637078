using System.Diagnostics;
using ToyVmm.Loader;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;

namespace ToyVmm.Bench.Scenario;

/// <summary>
/// <c>make bench</c>'s scenarios (<c>scenario [runs] [guest...]</c>): first the cpusuite
/// comparison (<see cref="CpuSuiteScenario"/>: natively, under qemu-user, interpreted and
/// tiered on flat memory, EPT and EPT under pressure, time to first instruction), then the
/// memory guests under host pressure with the MMU's fault and invalidation latencies, and
/// what measuring costs. Medians of several runs; the machine is
/// shared and noisy, so read ratios rather than absolute figures.
/// </summary>
public static class ScenarioRunner
{
    private const ulong Ram = 64UL << 20;

    public static int Run(string[] args)
    {
        if (!CpuSuiteArgs.TryParse(args, out var parsed, out string? error))
        {
            Console.Error.WriteLine($"scenario: {error}");
            return 2;
        }
        int runs = parsed.Runs;
        string root = ScenarioTools.RepoRoot();
        Console.WriteLine($"# ToyVmm scenarios: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}, {runs} runs each, medians; load average {ScenarioTools.LoadAverage()}");
        if (!CpuSuiteScenario.Run(parsed, ScenarioTools.FindOnPath("qemu-x86_64"))) return 1;
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
