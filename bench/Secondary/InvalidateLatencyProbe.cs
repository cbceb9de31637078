using System.Diagnostics;
using HdrHistogram;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;

namespace ToyVmm.Bench.Secondary;

/// <summary>
/// Per-invalidation latency percentiles, start to end, of one mapped page
/// while 0, 1 or 2 vCPUs run guest code and hold the page in their TLBs.
/// BenchmarkDotNet's <see cref="InvalidateOnePageBenchmarks"/> gives means per
/// iteration; the target is stated as p50 and p99, which only a per-operation
/// histogram shows. Run: <c>ToyVmm.Bench invalidate-latency [samples]</c>.
/// </summary>
public static unsafe class InvalidateLatencyProbe
{
    private const ulong Ram = 64UL << 20;
    private const int Pages = 256;

    public static void Run(string[] args)
    {
        int samples = args.Length > 0 && int.TryParse(args[0], out int n) && n > 0 ? n : 20_000;
        Console.WriteLine($"invalidate latency probe: {samples} one-page invalidations per row, {Environment.ProcessorCount} cores");
        Console.WriteLine($"{"running vCPUs",-14} {"p50",9} {"p90",9} {"p99",9} {"p99.9",9} {"max",10} {"start p50",10} {"end p50",9}");
        foreach (bool touched in new[] { false, true })
        {
            Console.WriteLine(touched ? "page in the running vCPUs' TLBs (they read all the pages in a loop):" : "page mapped for the running vCPUs, not in their TLBs:");
            for (int running = touched ? 1 : 0; running <= 2; running++)
            {
                var (h, start, end, shootdowns) = Measure(running, samples, touched);
                Console.WriteLine($"{running,-14} {Fmt(h.GetValueAtPercentile(50)),9} {Fmt(h.GetValueAtPercentile(90)),9} {Fmt(h.GetValueAtPercentile(99)),9} {Fmt(h.GetValueAtPercentile(99.9)),9} {Fmt(h.GetMaxValue()),10} {Fmt(start),10} {Fmt(end),9}");
                Console.WriteLine($"{"",-14} {shootdowns}");
            }
        }
    }

    private static string Fmt(long ns) => ns < 10_000 ? $"{ns} ns" : ns < 10_000_000 ? $"{ns / 1000.0:F1} us" : $"{ns / 1e6:F1} ms";

    private static (HistogramBase All, long StartP50, long EndP50, ShootdownCounts Shootdowns) Measure(int running, int samples, bool touched)
    {
        using var memory = new HostBackedMemory(Ram, Math.Max(1, running), new GuestMemoryConfig(Ram + (Ram >> 3)));
        using var guest = running > 0 ? new SpinGuest(memory.Memory, running, touched ? PageGfn(0) << Page.Shift : 0, touched ? Pages : 0) : null;
        // Fill through links with the running vCPUs' indices, so that every page lists
        // them as TLB holders and each zap must flush all of them (the worst case).
        VcpuLink[] fillers = [.. Enumerable.Range(0, Math.Max(1, running)).Select(i => new VcpuLink(i))];
        var notifiers = memory.Space.Notifiers;
        var h = LatencyScale.NewHistogram();
        var startOnly = LatencyScale.NewHistogram();
        var endOnly = LatencyScale.NewHistogram();
        int done = -4 * Pages;   // the first rounds warm up and are not recorded
        while (done < samples)
        {
            for (int i = 0; i < Pages; i++)
                foreach (var f in fillers)
                    memory.Mmu.Translate(f, Gpa.FromPageNumber(PageGfn(i)), AccessKind.Write, out _);
            for (int i = 0; i < Pages && done < samples; i++, done++)
            {
                var hva = memory.RamHva.Add(PageGfn(i) << Page.Shift);
                var r = new InvalidateRange(hva, hva.Add(Page.Size), InvalidateEvent.Clear, MayBlock: true);
                long t0 = Stopwatch.GetTimestamp();
                notifiers.InvalidateRangeStart(r);
                long tm = Stopwatch.GetTimestamp();
                notifiers.InvalidateRangeEnd(r);
                long t = Stopwatch.GetTimestamp() - t0;
                if (done >= 0)
                {
                    startOnly.RecordValue(LatencyScale.TicksToNs(tm - t0));
                    endOnly.RecordValue(LatencyScale.TicksToNs(t0 + t - tm));
                    h.RecordValue(LatencyScale.TicksToNs(t));
                }
            }
        }
        return (h, startOnly.GetValueAtPercentile(50), endOnly.GetValueAtPercentile(50), memory.Mmu.Shootdowns);
    }

    private static ulong PageGfn(int i) => (32UL << 20 >> Page.Shift) + (ulong)i;
}
