using System.Diagnostics;
using ToyVmm.Bench.Scenario;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Host;

namespace ToyVmm.Bench.Host;

/// <summary>
/// What the host's background reclaimer thread costs while it has nothing to do on a
/// machine with no idle core: a host whose free count is above every watermark (nothing
/// allocates, nothing is owed), its reclaimer started, and two threads that spin on
/// arithmetic the whole time (standing in for two vCPU threads on a 2-core machine).
/// Over each window the reclaimer thread's scheduler figures are read from
/// <c>/proc/self/task/&lt;tid&gt;/schedstat</c> (ns on a CPU, ns runnable but waiting for
/// one) and <c>status</c> (voluntary and involuntary context switches), before and after;
/// the thread is found by its name (<c>toyvmm-reclaim</c>). Also the rounds it ran (none
/// are owed). Medians over the runs.
/// Run: <c>ToyVmm.Bench reclaimer-idle [seconds] [runs]</c> (default 3 s, 5 runs; Linux only).
/// </summary>
public static class ReclaimerIdleProbe
{
    public static int Run(string[] args)
    {
        int seconds = 3, runs = 5;
        if (args.Length > 0 && (!int.TryParse(args[0], out seconds) || seconds is < 1 or > 600))
        {
            Console.Error.WriteLine($"reclaimer-idle: '{args[0]}' is not a window of 1 to 600 seconds");
            return 2;
        }
        if (args.Length > 1 && (!int.TryParse(args[1], out runs) || runs is < 1 or > 100))
        {
            Console.Error.WriteLine($"reclaimer-idle: '{args[1]}' is not a run count of 1 to 100");
            return 2;
        }
        if (!File.Exists("/proc/thread-self/schedstat"))
        {
            Console.Error.WriteLine("reclaimer-idle: needs Linux /proc/self/task/<tid>/schedstat");
            return 2;
        }
        Console.WriteLine($"# reclaimer-idle: {Environment.ProcessorCount} cores, 2 spinning threads, {seconds} s windows, {runs} runs; load average {ScenarioTools.LoadAverage()}");
        var onCpu = new List<double>();
        var waiting = new List<double>();
        var switches = new List<double>();
        var spinnersCpu = new List<double>();
        for (int r = 0; r < runs; r++)
        {
            var m = Measure(seconds);
            if (m is null) return 1;
            var (cpuMs, waitMs, vol, invol, rounds, spinMs) = m.Value;
            Console.WriteLine($"run {r + 1}: reclaimer on CPU {cpuMs:F1} ms, runnable-waiting {waitMs:F0} ms ({100 * waitMs / (seconds * 1000.0):F0}% of the window), " +
                              $"switches {vol} voluntary / {invol} involuntary, rounds {rounds}; the spinners {spinMs / (seconds * 10.0):F0}% of a core each");
            onCpu.Add(cpuMs);
            waiting.Add(waitMs);
            switches.Add(vol + invol);
            spinnersCpu.Add(spinMs / (seconds * 10.0));
        }
        Console.WriteLine($"median: reclaimer on CPU {Median(onCpu):F1} ms per {seconds} s, runnable-waiting {Median(waiting):F0} ms ({100 * Median(waiting) / (seconds * 1000.0):F0}%), " +
                          $"{Median(switches):F0} switches; spinners {Median(spinnersCpu):F0}% of a core each; load average after {ScenarioTools.LoadAverage()}");
        return 0;
    }

    private static (double CpuMs, double WaitMs, long Voluntary, long Involuntary, long Rounds, double SpinnersCpuMs)? Measure(int seconds)
    {
        using var host = new HostMemory(new HostMemoryOptions { HostMemoryBytes = 64UL << 20, SwapBytes = 16UL << 20 });
        // A stopped reclaimer's thread may outlive its service briefly: look only at new ones.
        var earlier = Tasks("toyvmm-reclaim");
        var svc = new HostReclaimerService(host);
        svc.StartAsync(CancellationToken.None).GetAwaiter().GetResult();
        using var stop = new CancellationTokenSource();
        var spinnerTids = new int[2];
        var spinners = Enumerable.Range(0, 2).Select(i => new Thread(() =>
        {
            Volatile.Write(ref spinnerTids[i], CurrentTid());
            ulong x = 1;
            while (!stop.IsCancellationRequested)
                for (int k = 0; k < 100_000; k++) x = x * 6364136223846793005UL + 1442695040888963407UL;
            GC.KeepAlive(x);
        }) { IsBackground = true, Name = "spin-" + i }).ToList();
        try
        {
            int tid = FindTask("toyvmm-reclaim", earlier);
            if (tid < 0)
            {
                Console.Error.WriteLine("reclaimer-idle: the reclaimer thread (toyvmm-reclaim) was not found under /proc/self/task");
                return null;
            }
            foreach (var t in spinners) t.Start();
            // Let the spinners start (on a loaded machine a new thread may wait for a core) and settle.
            if (!SpinWait.SpinUntil(() => Volatile.Read(ref spinnerTids[0]) != 0 && Volatile.Read(ref spinnerTids[1]) != 0, 30_000))
            {
                Console.Error.WriteLine("reclaimer-idle: the spinning threads did not start within 30 s");
                return null;
            }
            Thread.Sleep(500);
            var before = Read(tid);
            var spinBefore = spinnerTids.Sum(t => Read(t).RunNs);
            long roundsBefore = svc.Rounds;
            Thread.Sleep(seconds * 1000);
            var after = Read(tid);
            var spinAfter = spinnerTids.Sum(t => Read(t).RunNs);
            return ((after.RunNs - before.RunNs) / 1e6, (after.WaitNs - before.WaitNs) / 1e6,
                    after.Voluntary - before.Voluntary, after.Involuntary - before.Involuntary,
                    svc.Rounds - roundsBefore, (spinAfter - spinBefore) / 2 / 1e6);
        }
        finally
        {
            stop.Cancel();
            foreach (var t in spinners) if (t.IsAlive) t.Join();
            svc.StopAsync(CancellationToken.None).GetAwaiter().GetResult();
        }
    }

    private static int CurrentTid() => int.Parse(Path.GetFileName(new DirectoryInfo("/proc/thread-self").ResolveLinkTarget(false)!.FullName));

    /// <summary>A thread named <paramref name="name"/> that is not one of <paramref name="earlier"/>, waiting up to 30 s for it; -1 when none.</summary>
    private static int FindTask(string name, HashSet<int> earlier)
    {
        var sw = Stopwatch.StartNew();
        while (sw.ElapsedMilliseconds < 30_000)
        {
            foreach (int tid in Tasks(name))
                if (!earlier.Contains(tid)) return tid;
            Thread.Sleep(10);
        }
        return -1;
    }

    private static HashSet<int> Tasks(string name)
    {
        var found = new HashSet<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc/self/task"))
        {
            try
            {
                if (File.ReadAllText(Path.Combine(dir, "comm")).Trim() == name) found.Add(int.Parse(Path.GetFileName(dir)));
            }
            catch (IOException) { }   // the thread ended meanwhile
        }
        return found;
    }

    private static (long RunNs, long WaitNs, long Voluntary, long Involuntary) Read(int tid)
    {
        string dir = $"/proc/self/task/{tid}";
        var s = File.ReadAllText(dir + "/schedstat").Split(' ');
        long vol = 0, invol = 0;
        foreach (var line in File.ReadLines(dir + "/status"))
        {
            if (line.StartsWith("voluntary_ctxt_switches:", StringComparison.Ordinal)) vol = long.Parse(line.AsSpan(line.IndexOf(':') + 1).Trim());
            else if (line.StartsWith("nonvoluntary_ctxt_switches:", StringComparison.Ordinal)) invol = long.Parse(line.AsSpan(line.IndexOf(':') + 1).Trim());
        }
        return (long.Parse(s[0]), long.Parse(s[1]), vol, invol);
    }

    private static double Median(List<double> xs)
    {
        var s = xs.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }
}
