using BenchmarkDotNet.Running;
using ToyVmm.Bench.Scenario;

// `scenario [runs] [guest...]`: the cpusuite comparison, then memory guests under pressure and what measuring costs (make bench).
// `cpusuite [runs] [guest...]`: the cpusuite guests natively, under qemu-user, interpreted and tiered on flat
//   memory, EPT and EPT under pressure, wall and CPU MIPS, ratios, time to first instruction; `tiers` is an alias.
// `interp [runs] [guest...]`: the interpreter alone on the cpusuite guests, wall and CPU-time MIPS (`tier`, interpreted runs only).
// `tier [runs] [guest...]`: interpreted and tiered alternating in-process on flat memory, wall and CPU-time MIPS.
// `host-latency`: per-operation percentiles of the host's faults and page-outs.
// `secondary-fault-latency`: per-fault percentiles of EPT misses by host fault kind.
// `reclaim-under-guest [VCPUS...]`: page-out and reclaim throughput with 1 and 2 vCPUs running (or the counts given), and their MIPS meanwhile.
// `invalidate-latency [samples] [ept|shadow] [nice] [all|unpinned|pinned] [both|woken|tick]`: per-invalidation percentiles with 0, 1, 2 vCPUs running (unpinned, then pinned), page held or not; the probe woken by its timer or back at a tick.
// `mmu-memory [ept|shadow|both] [pages...]`: managed bytes per mapped page of each secondary MMU's structures.
// `grant-latency [samples]`: recall, attacher-fault and per-attacher percentiles of grants.
// `soak [seconds]`: every guest under every safe configuration until the time is up (make soak).
// Anything else goes to BenchmarkDotNet's switcher (micro-benchmarks); see bench/RESULTS.md.
if (args.Length > 0 && args[0] == "scenario")
    return ScenarioRunner.Run(args[1..]);
if (args.Length > 0 && args[0] is "cpusuite" or "tiers")
    return CpuSuiteScenario.Run(args[1..]);
if (args.Length > 0 && args[0] == "interp")
    return ToyVmm.Bench.Cpu.TierScenario.Run(args[1..], interpreterOnly: true);
if (args.Length > 0 && args[0] == "tier")
    return ToyVmm.Bench.Cpu.TierScenario.Run(args[1..]);
if (args.Length > 0 && args[0] == "soak")
    return ToyVmm.Bench.Soak.SoakCommand.Run(args[1..]);
if (args.Length > 0 && args[0] == "host-latency")
{
    ToyVmm.Bench.Host.HostLatencyProbe.Run();
    return 0;
}
if (args.Length > 0 && args[0] == "secondary-fault-latency")
{
    ToyVmm.Bench.Secondary.SecondaryFaultLatencyProbe.Run();
    return 0;
}
if (args.Length > 0 && args[0] == "reclaim-under-guest")
{
    var counts = new List<int>();
    foreach (var a in args[1..])
    {
        if (!int.TryParse(a, out int v) || v < 1 || v > 8)
        {
            Console.Error.WriteLine($"reclaim-under-guest: '{a}' is not a vCPU count from 1 to 8");
            return 2;
        }
        counts.Add(v);
    }
    ToyVmm.Bench.Host.ReclaimUnderGuestProbe.Run(counts.Count > 0 ? counts : [1, 2]);
    return 0;
}
if (args.Length > 0 && args[0] == "invalidate-latency")
    return ToyVmm.Bench.Secondary.InvalidateLatencyProbe.Run(args[1..]);
if (args.Length > 0 && args[0] == "mmu-memory")
    return ToyVmm.Bench.Secondary.MmuMemoryProbe.Run(args[1..]);
if (args.Length > 0 && args[0] == "grant-latency")
    return ToyVmm.Bench.Grants.GrantLatencyProbe.Run(args[1..]);
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
return 0;
