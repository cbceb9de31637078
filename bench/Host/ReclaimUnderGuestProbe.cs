using System.Diagnostics;
using ToyVmm.Bench.Secondary;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;

namespace ToyVmm.Bench.Host;

/// <summary>
/// Page-out and reclaim throughput with 1 vCPU and then 2 vCPUs running guest code, and
/// what the vCPUs see meanwhile. With 1 vCPU the page-out thread and the vCPU can each
/// have a core of a 2-core machine; with 2 they share. The vCPUs read 4096 pages of their
/// own over and over (so they hold them in their TLBs); the host side dirties a region of
/// 8192 other pages, maps every page of it into the EPT with every vCPU as a TLB holder
/// (so every zap asks them to flush), and pages it out (PAGEOUT of the range; PAGEOUT of a
/// scattered quarter of it as the page-out driver's picks ask, through the management
/// side) or reclaims it from the LRU, 7 rounds each, timed in wall-clock and thread-CPU
/// time. Guest MIPS over the rounds against the same time with the host idle; invalidation
/// p50/p99 from the run's measurements.
/// Run: <c>ToyVmm.Bench reclaim-under-guest [VCPUS...]</c> (default: 1 2).
/// </summary>
public static unsafe class ReclaimUnderGuestProbe
{
    private const ulong Ram = 256UL << 20;
    private const int Pages = 8192;
    private const ulong RegionGpa = 64UL << 20;
    private const ulong GuestWorkingSet = 16UL << 20;
    private const int Rounds = 7;
    /// <summary>Rounds after the measured ones that time each step of the page-out path in thread-CPU time.</summary>
    private const int StepRounds = 2;

    /// <summary>The scattered quarter of the region a driver-style PAGEOUT lists: the same random sample every round.</summary>
    private static readonly Gpa[] ScatteredPicks = new Random(17).GetItems(Enumerable.Range(0, Pages).ToArray(), Pages)
        .Distinct().Take(Pages / 4).Order().Select(i => new Gpa(RegionGpa + ((ulong)i << Page.Shift))).ToArray();

    /// <summary>The measured operations: name, the operation (returns the pages it paged out), whether the region is dirtied in a random order.</summary>
    private static readonly (string Name, Func<HostBackedMemory, long> Op, bool Scattered)[] Operations =
    [
        ("PageOut, dirty -> swap file", m => m.Space.PageOut(m.RamHva.Add(RegionGpa), (ulong)Pages << Page.Shift).Written, false),
        ("PageOut, scattered quarter (driver)", PageOutScattered, false),
        ("LRU reclaim, dirty -> swap file", m => m.Host.ReclaimNow(Pages, ignoreAccessed: true), false),
        ("LRU reclaim, scattered pages", m => m.Host.ReclaimNow(Pages, ignoreAccessed: true), true),
    ];

    /// <summary>Rounds of each operation in the warm-up before anything is recorded.</summary>
    private const int WarmUpRounds = 3;

    public static void Run(IReadOnlyList<int> vcpuCounts)
    {
        WarmUp(vcpuCounts[0]);
        foreach (int vcpus in vcpuCounts) RunWith(vcpus);
    }

    /// <summary>
    /// Every operation's rounds, twice, with nothing recorded: a set-up lasts about a second,
    /// and with tiered compilation on (the bench's default) the page-out path's methods would
    /// otherwise still run their first, unoptimised tier through much of the first set-up.
    /// The pause between the passes lets the background compiler install the optimised code
    /// (it waits for a quiet 100 ms before compiling what got hot).
    /// </summary>
    private static void WarmUp(int vcpus)
    {
        var sw = Stopwatch.StartNew();
        for (int pass = 0; pass < 2; pass++)
        {
            foreach (var (_, op, scattered) in Operations)
                GuestMips(vcpus, null, m => Rounds_(m, vcpus, null, op, scattered, WarmUpRounds));
            Thread.Sleep(300);
        }
        Console.WriteLine($"warm-up (not recorded): every operation {2 * WarmUpRounds} rounds with {vcpus} vCPU(s), {sw.Elapsed.TotalSeconds:F1} s");
    }

    private static void RunWith(int vcpus)
    {
        Console.WriteLine($"reclaim under a running guest: {vcpus} vCPU(s), {Pages} pages per round ({ScatteredPicks.Length} for the scattered PAGEOUT), {Rounds} rounds, load average {LoadAverage()}");
        double idleMips = GuestMips(vcpus, TimeSpan.FromSeconds(2), null);
        Console.WriteLine($"guest, host idle                         {idleMips,8:F1} MIPS");
        foreach (var (name, reclaim, scattered) in Operations)
        {
            double mips = GuestMips(vcpus, null, m => Rounds_(m, vcpus, name, reclaim, scattered, Rounds));
            Console.WriteLine($"guest, during {name,-27} {mips,8:F1} MIPS ({100 * mips / idleMips:F0}% of idle)");
        }
    }

    /// <summary>The scattered picks paged out through the management side with one vectored PAGEOUT, as the page-out driver's cold, hot and burst picks do.</summary>
    private static long PageOutScattered(HostBackedMemory m) => m.Memory.Management.PageOutPages(ScatteredPicks);

    /// <summary>Run the guest for <paramref name="idle"/>, or while <paramref name="work"/> runs; returns its MIPS.</summary>
    private static double GuestMips(int vcpus, TimeSpan? idle, Action<HostBackedMemory>? work)
    {
        // Enough frames for the region and the guest: only the measured operations page out.
        using var memory = new HostBackedMemory(Ram, vcpus, new GuestMemoryConfig(Ram + (Ram >> 3)));
        var sw = Stopwatch.StartNew();
        var guest = new SpinGuest(memory.Memory, vcpus, touchBase: 32UL << 20, touchPages: (int)(GuestWorkingSet >> Page.Shift));
        try
        {
            sw.Restart();
            if (idle is { } t) Thread.Sleep(t);
            else work!(memory);
        }
        finally
        {
            sw.Stop();
            guest.Dispose();
        }
        // Instructions include the guest's start-up before the clock started: a small bias, the same in every row.
        return (guest.Result?.InstructionsRetired ?? 0) / sw.Elapsed.TotalSeconds / 1e6;
    }

    /// <param name="scattered">Dirty the region's pages in a random order, so that the LRU lists them
    /// (and reclaim finds them) scattered, as a guest touching memory at random leaves them.</param>
    /// <param name="name">The row's name; null: a warm-up, which prints nothing.</param>
    private static void Rounds_(HostBackedMemory m, int vcpus, string? name, Func<HostBackedMemory, long> op, bool scattered, int rounds)
    {
        var fillers = Enumerable.Range(0, vcpus).Select(i => new VcpuLink(i)).ToArray();
        var wall = new List<double>();
        var cpu = new List<double>();
        var before = m.Snapshot().Total;
        var tap = new PageOutTimeTap(m.Measurements);
        m.Host.Events = tap;
        if (m.Mmu is EptMmu ept) ept.Events = tap;
        var order = Enumerable.Range(0, Pages).ToArray();
        if (scattered) new Random(13).Shuffle(order);
        double sumWall = 0, sumCpu = 0, sumQueue = 0, sumInv = 0, sumSwap = 0;
        var sumShoot = new double[4];
        var sumCpuStep = new double[4];
        double sumStepCpu = 0;
        long[] shootCount = new long[4];
        long invCount = 0;
        // The CPU-by-step breakdown reads the thread's CPU clock (a system call) at every event
        // of the page-out path, several per batch: a few percent of its CPU. So it comes from
        // StepRounds further rounds, and the measured rounds run without it.
        int stepRounds = name is null ? 0 : StepRounds;
        for (int r = 0; r < rounds + stepRounds; r++)
        {
            bool stepRound = r >= rounds;
            foreach (int i in order)
            {
                var gpa = new Gpa(RegionGpa + ((ulong)i << Page.Shift));
                m.Space.WriteUInt64(m.RamHva.Add(gpa.Value), (ulong)(r * Pages + i + 1));
                foreach (var f in fillers) m.Mmu.Translate(f, gpa, AccessKind.Write, out _);
            }
            tap.WatchThisThread(chargeCpu: stepRound);
            var s0 = ThreadSchedStat.Read();
            long c0 = HostLatencyProbe.ThreadCpuNs(), t0 = Stopwatch.GetTimestamp();
            long n = op(m);
            double w = (Stopwatch.GetTimestamp() - t0) * 1e9 / Stopwatch.Frequency, c = HostLatencyProbe.ThreadCpuNs() - c0;
            var s1 = ThreadSchedStat.Read();
            if (n <= 0) { if (name is not null) Console.WriteLine($"{name}: round {r} did nothing"); continue; }
            if (stepRound)
            {
                for (int k = 0; k < 4; k++) sumCpuStep[k] += tap.CpuNsByStep[k] / 1e6;
                sumStepCpu += c / 1e6;
                continue;
            }
            sumWall += w / 1e6; sumCpu += c / 1e6; sumQueue += (s1.RunQueueNs - s0.RunQueueNs) / 1e6;
            sumInv += PageOutTimeTap.Ms(tap.InvalidateTicks); sumSwap += PageOutTimeTap.Ms(tap.SwapWriteTicks); invCount += tap.Invalidations;
            for (int k = 0; k < 4; k++)
            {
                sumShoot[k] += PageOutTimeTap.Ms(tap.ShootdownTicks[k]); shootCount[k] += tap.Shootdowns[k];
            }
            wall.Add(n / w * 1e9);
            cpu.Add(n / c * 1e9);
        }
        m.Host.Events = m.Measurements;
        if (m.Mmu is EptMmu e2) e2.Events = m.Measurements;
        if (name is null || wall.Count == 0) return;
        wall.Sort(); cpu.Sort();
        var total = m.Snapshot().Total;
        var inv = LatencyScale.NewHistogram();
        foreach (var (cause, h) in total.Invalidations)
            if (cause is InvalidateCause.PageOut or InvalidateCause.Reclaim) inv.Add(h);
        long count = inv.TotalCount - before.Invalidations.Where(kv => kv.Key is InvalidateCause.PageOut or InvalidateCause.Reclaim).Sum(kv => kv.Value.TotalCount);
        Console.WriteLine($"{name,-40} wall median {wall[wall.Count / 2],9:F0} /s best {wall[^1],9:F0} /s   thread-CPU median {cpu[cpu.Count / 2],9:F0} /s");
        Console.WriteLine($"  invalidations {count}: p50 {P(inv, 50)} ns, p99 {P(inv, 99)} ns, p99.9 {P(inv, 99.9)} ns; shootdowns {m.Shootdowns}");
        // Where the wall time of all rounds went, on the page-out thread (ms, and share of wall).
        string Pct(double ms) => $"{ms,8:F1} ms {100 * ms / sumWall,5:F1}%";
        Console.WriteLine($"  wall {sumWall:F1} ms: on CPU {Pct(sumCpu)} | runnable, waiting for a CPU {Pct(sumQueue)} | blocked/sleeping {Pct(Math.Max(0, sumWall - sumCpu - sumQueue))}");
        Console.WriteLine($"  inside {invCount} invalidations {Pct(sumInv)} | swap writes {Pct(sumSwap)} | rest (locks, unmap, free, LRU) {Pct(Math.Max(0, sumWall - sumInv - sumSwap))}");
        Console.WriteLine($"  shootdown waits: never held {shootCount[0]} / {Pct(sumShoot[0])} | acknowledged {shootCount[1]} / {Pct(sumShoot[1])} | shot down {shootCount[2]} / {Pct(sumShoot[2])} | waited {shootCount[3]} / {Pct(sumShoot[3])}");
        string Cpu(double ms) => $"{ms,7:F1} ms {100 * ms / sumStepCpu,5:F1}%";
        Console.WriteLine($"  CPU by step ({stepRounds} further rounds): to each shootdown's end (take pages, zap, shootdown) {Cpu(sumCpuStep[0])} | to the invalidation's end (unmap, swap slots) {Cpu(sumCpuStep[1])} | swap writes {Cpu(sumCpuStep[2])} | to the batch's end (free) {Cpu(sumCpuStep[3])}");
    }

    private static long P(HdrHistogram.HistogramBase h, double q) => h.TotalCount == 0 ? 0 : h.GetValueAtPercentile(q);

    private static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "unknown"; }
    }
}
