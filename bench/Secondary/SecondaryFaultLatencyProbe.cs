using System.Diagnostics;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Bench.Secondary;

/// <summary>
/// Per-operation secondary fault latency: a Stopwatch around every single Translate
/// that misses the EPT (slot lookup, get_user_pages, locked re-check, install), with
/// the host page present, zero-filled, or swapped in from the swap file (in the page
/// cache); nothing recorded by the MMU. Prints p50/p90/p99 over 7 rounds of 4096 pages
/// after 2 warm-up rounds. Run: <c>ToyVmm.Bench secondary-fault-latency</c>.
/// </summary>
public static unsafe class SecondaryFaultLatencyProbe
{
    private const int Pages = 4096;
    private const int Rounds = 7;

    public static void Run()
    {
        using var host = new HostMemory(new HostMemoryOptions { HostMemoryBytes = 4UL * Pages << Page.Shift, SwapBytes = 4UL * Pages << Page.Shift });
        var mm = host.CreateAddressSpace();
        var b = mm.Map((ulong)Pages << Page.Shift, HostProtection.ReadWrite);
        using var mmu = new EptMmu(new SecondaryHostBinding(mm), (ulong)Pages << Page.Shift, b);
        var vcpu = new VcpuLink(0);
        mmu.AttachVcpu(vcpu);
        var samples = new long[Pages];
        Console.WriteLine($"secondary fault probe: {Pages} pages per round, {Rounds} rounds, Stopwatch resolution {1e9 / Stopwatch.Frequency:F0} ns");

        void Zap()
        {
            var r = new InvalidateRange(b, b.Add((ulong)Pages << Page.Shift), InvalidateEvent.Clear, true);
            mm.Notifiers.InvalidateRangeStart(r);
            mm.Notifiers.InvalidateRangeEnd(r);
        }
        long[] Faults(AccessKind kind)
        {
            for (int i = 0; i < Pages; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                var st = mmu.Translate(vcpu, Gpa.FromPageNumber((ulong)i), kind, out _);
                samples[i] = Stopwatch.GetTimestamp() - t0;
                if (st != TranslateStatus.Ok) throw new InvalidOperationException($"fault on page {i}: {st}");
            }
            return (long[])samples.Clone();
        }
        void Present() { for (int i = 0; i < Pages; i++) mm.Fault(b.Add((ulong)i << Page.Shift), write: true); Zap(); }
        void Empty() { mm.DontNeed(b, (ulong)Pages << Page.Shift); Zap(); }
        void Swapped()
        {
            for (int i = 0; i < Pages; i++) mm.WriteUInt64(b.Add((ulong)i << Page.Shift), (ulong)i + 1);
            mm.PageOut(b, (ulong)Pages << Page.Shift);
            Zap();
        }

        Report("secondary fault, host page present", Repeat(() => { Present(); return Faults(AccessKind.Read); }));
        Report("secondary fault, zero-fill", Repeat(() => { Empty(); return Faults(AccessKind.Write); }));
        Report("secondary fault, swap-in (file)", Repeat(() => { Swapped(); return Faults(AccessKind.Read); }));
    }

    private static long[] Repeat(Func<long[]> round)
    {
        for (int w = 0; w < 2; w++) round();
        var all = new List<long>();
        for (int r = 0; r < Rounds; r++) all.AddRange(round());
        return [.. all];
    }

    private static void Report(string what, long[] ticks)
    {
        Array.Sort(ticks);
        double ns(double q) => ticks[(int)Math.Min(ticks.Length - 1, q * ticks.Length)] * 1e9 / Stopwatch.Frequency;
        Console.WriteLine($"{what,-40} p50 {ns(0.50),8:F0} ns   p90 {ns(0.90),8:F0} ns   p99 {ns(0.99),9:F0} ns   (n={ticks.Length})");
    }
}
