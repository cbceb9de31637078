using System.Runtime.InteropServices;

namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// Pins the calling thread to one CPU (Linux <c>sched_setaffinity</c> on its own thread) and
/// remembers it for the thread, so that a TLB shootdown run on that thread knows, without a
/// barrier, that no vCPU pinned to the same CPU is running (mmu/LOCKING.md "An invalidator pinned
/// beside the vCPU"). vCPU threads pin themselves through it (<c>--pin-vcpus</c>); an invalidator
/// thread (a reclaimer, the invalidation probe) may too.
/// </summary>
/// <remarks>
/// What it remembers stays true only while nobody else changes the thread's affinity (the same
/// assumption as for pinned vCPUs). <see cref="Current"/> checks the thread's CPU each time it is
/// asked (<c>sched_getcpu</c>, tens of nanoseconds): a thread found elsewhere forgets its pin.
/// </remarks>
public static unsafe partial class ThreadCpuPin
{
    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetAffinity(int pid, nuint size, ulong* mask);

    [LibraryImport("libc", EntryPoint = "sched_getcpu")]
    private static partial int SchedGetCpu();

    /// <summary>The CPU the calling thread runs on now (<c>sched_getcpu</c>), or -1 where it cannot be told.</summary>
    internal static int CpuNow()
    {
        if (!OperatingSystem.IsLinux()) return -1;
        try { return Math.Max(-1, SchedGetCpu()); }
        catch (EntryPointNotFoundException) { return -1; }
    }

    /// <summary>Bits of CPU mask tried, smallest first (EINVAL: the kernel's mask is larger).</summary>
    private static readonly int[] MaskBits = [1024, 8192];

    [ThreadStatic] private static int _cpuPlusOne;   // 0: this thread has not pinned itself here
    [ThreadStatic] private static int _movedTo;      // the CPU it was last found on off its pin, plus one

    /// <summary>
    /// Allow the calling thread to run on <paramref name="cpu"/> only, and remember it. Returns
    /// null when done, or why not (the call refused: a CPU outside the cgroup's set, a seccomp
    /// filter ...); a refused pin leaves the thread as it was and remembers nothing.
    /// </summary>
    public static string? TryPin(int cpu)
    {
        if (!OperatingSystem.IsLinux()) return "pinning a thread needs Linux";
        if (cpu < 0 || cpu >= MaskBits[^1]) return $"CPU {cpu} is out of range";
        int bits = cpu < MaskBits[0] ? MaskBits[0] : MaskBits[^1];
        var mask = new ulong[bits / 64];
        mask[cpu / 64] = 1UL << (cpu % 64);
        try
        {
            fixed (ulong* m = mask)
            {
                if (SchedSetAffinity(0, (nuint)(bits / 8), m) != 0)
                    return $"sched_setaffinity to CPU {cpu} refused (errno {Marshal.GetLastPInvokeError()})";
            }
        }
        catch (EntryPointNotFoundException) { return "libc has no sched_setaffinity"; }
        catch (DllNotFoundException) { return "libc not found"; }
        _cpuPlusOne = cpu + 1;
        _movedTo = 0;
        return null;
    }

    /// <summary>
    /// The CPU the calling thread pinned itself to with <see cref="TryPin"/>, or -1. A thread found
    /// running on another CPU (its affinity changed from outside) forgets its pin here and returns -1
    /// from then on (<see cref="MovedTo"/> says where it was found).
    /// </summary>
    public static int Current
    {
        get
        {
            int cpu = _cpuPlusOne - 1;
            if (cpu < 0) return -1;
            int now = CpuNow();
            if (now == cpu) return cpu;
            _cpuPlusOne = 0;
            _movedTo = now + 1;
            return -1;
        }
    }

    /// <summary>The CPU the calling thread was found on when it forgot its pin, or null.</summary>
    public static int? MovedTo => _movedTo == 0 ? null : _movedTo - 1;
}
