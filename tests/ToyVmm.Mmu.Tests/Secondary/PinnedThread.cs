using System.Runtime.InteropServices;

namespace ToyVmm.Mmu.Tests.Secondary;

/// <summary>Runs test code on a thread pinned to one CPU (Linux sched_setaffinity), as a pinned vCPU or invalidator.</summary>
internal static unsafe partial class PinnedThread
{
    [LibraryImport("libc", EntryPoint = "sched_getaffinity", SetLastError = true)]
    private static partial int SchedGetAffinity(int pid, nuint size, ulong* mask);

    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetAffinity(int pid, nuint size, ulong* mask);

    /// <summary>The CPUs the calling thread may run on (empty off Linux).</summary>
    public static int[] AllowedCpus()
    {
        if (!OperatingSystem.IsLinux()) return [];
        ulong* mask = stackalloc ulong[16];
        if (SchedGetAffinity(0, 128, mask) != 0) return [];
        var cpus = new List<int>();
        for (int c = 0; c < 1024; c++)
            if ((mask[c / 64] >> (c % 64) & 1) != 0) cpus.Add(c);
        return [.. cpus];
    }

    /// <summary>The first CPU the process may use, or -1.</summary>
    public static int FirstCpu => AllowedCpus() is [var c, ..] ? c : -1;

    /// <summary>Pin the calling thread to <paramref name="cpu"/>; throws when refused.</summary>
    public static void PinCurrent(int cpu)
    {
        ulong* mask = stackalloc ulong[16];
        mask[cpu / 64] = 1UL << (cpu % 64);
        if (SchedSetAffinity(0, 128, mask) != 0) throw new InvalidOperationException($"cannot pin a thread to CPU {cpu}: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>Runs <paramref name="body"/> on a new thread allowed on <paramref name="cpu"/> only, and waits for it; rethrows what it threw.</summary>
    public static void Run(int cpu, Action body)
    {
        Exception? failed = null;
        var t = Start(cpu, body, e => failed = e);
        t.Join();
        if (failed is not null) throw new InvalidOperationException("the pinned thread failed", failed);
    }

    /// <summary>Starts <paramref name="body"/> on a new thread allowed on <paramref name="cpu"/> only; what it throws goes to <paramref name="failed"/>.</summary>
    public static Thread Start(int cpu, Action body, Action<Exception> failed)
    {
        var t = new Thread(() =>
        {
            try
            {
                PinCurrent(cpu);
                body();
            }
            catch (Exception e) { failed(e); }
        });
        t.Start();
        return t;
    }
}
