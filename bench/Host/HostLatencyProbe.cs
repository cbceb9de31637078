using System.Diagnostics;
using System.Runtime.InteropServices;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Host;

namespace ToyVmm.Bench.Host;

/// <summary>
/// Per-operation latency percentiles and throughput of the host, measured
/// directly (Stopwatch around each fault; wall and thread-CPU time around each
/// PageOut), complementing BenchmarkDotNet's per-iteration means. On a shared,
/// oversubscribed machine the per-op p50 and the thread-CPU rates are the
/// figures least disturbed by other tenants. Run: <c>ToyVmm.Bench host-latency</c>.
/// </summary>
public static class HostLatencyProbe
{
    private const int Pages = 8192;

    public static void Run()
    {
        using var host = HostBenchUtil.NewHost(frames: 4 * Pages, swapPages: 4 * Pages);
        var inject = new FailingWrites();
        host.Swap.FaultInjector = inject;
        var mm = host.CreateAddressSpace();
        var b = mm.Map(Pages * Page.Size, HostProtection.ReadWrite);
        var samples = new long[Pages];
        Console.WriteLine($"host latency probe: {Pages} pages per round, Stopwatch resolution {1e9 / Stopwatch.Frequency:F0} ns");

        for (int warm = 0; warm < 2; warm++) { Faults(mm, b, samples, write: true); mm.DontNeed(b, Pages * Page.Size); }
        Report("zero-fill fault", Repeat(5, () => { mm.DontNeed(b, Pages * Page.Size); return Faults(mm, b, samples, write: true); }));
        Report("get_user_pages, resident", Repeat(5, () => Gup(mm, host, b, samples)));
        Report("swap-cache hit fault", Repeat(5, () =>
        {
            HostBenchUtil.Dirty(mm, b, Pages);
            inject.Fail = true; mm.PageOut(b, Pages * Page.Size); inject.Fail = false;
            return Faults(mm, b, samples, write: false);
        }));
        Report("swap-in fault (file)", Repeat(5, () =>
        {
            HostBenchUtil.Dirty(mm, b, Pages);
            mm.PageOut(b, Pages * Page.Size);
            return Faults(mm, b, samples, write: false);
        }));

        Throughput("PageOut, dirty resident -> swap file", 7, () => HostBenchUtil.Dirty(mm, b, Pages), () => mm.PageOut(b, Pages * Page.Size).Written);
        Throughput("PageOut, clean swap-cached (dropped)", 7, () =>
        {
            HostBenchUtil.Dirty(mm, b, Pages);
            mm.PageOut(b, Pages * Page.Size);
            for (int i = 0; i < Pages; i++) mm.Fault(b.Add((ulong)i * Page.Size), write: false);
        }, () => mm.PageOut(b, Pages * Page.Size).Dropped);
        Throughput("LRU reclaim, dirty -> swap file", 7, () => HostBenchUtil.Dirty(mm, b, Pages), () => host.ReclaimNow(Pages, ignoreAccessed: true));
        var young = new AlwaysYoung();
        mm.Notifiers.Register(young);
        // Zero-filled pages enter the active list; a secondary MMU that calls every page young keeps them there.
        Throughput("aging scan (rmap + PTE + notifier)", 7, () => { mm.DontNeed(b, Pages * Page.Size); HostBenchUtil.Dirty(mm, b, Pages); }, () =>
        {
            int scanned = 0, got;
            while (scanned < Pages && (got = host.Reclaim.AgeActive(64, ignoreYoung: false)) > 0) scanned += got;
            return scanned;
        });
        mm.Notifiers.Unregister(young);
        Console.WriteLine($"metadata: {FramePool.MetadataBytesPerFrame} B per frame ({100.0 * FramePool.MetadataBytesPerFrame / Page.Size:F2}% of 4 KiB)");
    }

    private static long[] Repeat(int rounds, Func<long[]> round)
    {
        var all = new List<long>();
        for (int r = 0; r < rounds; r++) all.AddRange(round());
        return [.. all];
    }

    private static long[] Faults(HostAddressSpace mm, Hva b, long[] samples, bool write)
    {
        for (int i = 0; i < Pages; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            mm.Fault(b.Add((ulong)i * Page.Size), write);
            samples[i] = Stopwatch.GetTimestamp() - t0;
        }
        return (long[])samples.Clone();
    }

    private static long[] Gup(HostAddressSpace mm, HostMemory host, Hva b, long[] samples)
    {
        for (int i = 0; i < Pages; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            mm.GetUserPage(b.Add((ulong)i * Page.Size), write: true, out var f);
            host.ReleasePage(f, PageRelease.Dirty);
            samples[i] = Stopwatch.GetTimestamp() - t0;
        }
        return (long[])samples.Clone();
    }

    private static void Report(string what, long[] ticks)
    {
        Array.Sort(ticks);
        double ns(double q) => ticks[(int)Math.Min(ticks.Length - 1, q * ticks.Length)] * 1e9 / Stopwatch.Frequency;
        Console.WriteLine($"{what,-40} p50 {ns(0.50),8:F0} ns   p90 {ns(0.90),8:F0} ns   p99 {ns(0.99),9:F0} ns   (n={ticks.Length})");
    }

    private static void Throughput(string what, int rounds, Action setup, Func<long> op)
    {
        var wall = new List<double>();
        var cpu = new List<double>();
        for (int r = 0; r < rounds; r++)
        {
            setup();
            long c0 = ThreadCpuNs(), t0 = Stopwatch.GetTimestamp();
            long n = op();
            double w = (Stopwatch.GetTimestamp() - t0) * 1e9 / Stopwatch.Frequency, c = ThreadCpuNs() - c0;
            if (n <= 0) { Console.WriteLine($"{what}: round {r} did nothing"); continue; }
            wall.Add(n / w * 1e9);
            cpu.Add(n / c * 1e9);
        }
        wall.Sort(); cpu.Sort();
        Console.WriteLine($"{what,-40} wall median {wall[wall.Count / 2],9:F0} /s best {wall[^1],9:F0} /s   thread-CPU median {cpu[cpu.Count / 2],9:F0} /s");
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec { public long Sec, Nsec; }

    [DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out Timespec ts);

    internal static long ThreadCpuNs()
    {
        if (!OperatingSystem.IsLinux()) return Stopwatch.GetTimestamp() * 1_000_000_000L / Stopwatch.Frequency;
        ClockGetTime(3 /* CLOCK_THREAD_CPUTIME_ID */, out var ts);
        return ts.Sec * 1_000_000_000L + ts.Nsec;
    }
}
