using System.Runtime.InteropServices;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Vm;

/// <summary>
/// Pins the calling vCPU thread to one CPU (<see cref="VmConfig.PinVcpus"/>; Linux
/// <c>sched_setaffinity</c> on the calling thread). A pinned vCPU can run only on its CPU, so a
/// TLB shootdown orders it with a barrier aimed at that CPU instead of the process-wide one, and
/// knows it is not running when the invalidator itself runs there (mmu/LOCKING.md "The barrier
/// aimed at a pinned vCPU's CPU").
/// </summary>
internal static unsafe partial class VcpuThreadAffinity
{
    [LibraryImport("libc", EntryPoint = "sched_getaffinity", SetLastError = true)]
    private static partial int SchedGetAffinity(int pid, nuint size, ulong* mask);

    /// <summary>Bits of CPU mask tried, smallest first (EINVAL: the kernel's mask is larger).</summary>
    private static readonly int[] MaskBits = [1024, 8192];

    /// <summary>
    /// The CPUs the calling thread may run on (sched_getaffinity), ascending; the vCPU threads it
    /// starts inherit that set. Empty, with <paramref name="why"/> set, where it cannot be read.
    /// </summary>
    public static int[] AllowedCpus(out string? why)
    {
        why = null;
        if (!OperatingSystem.IsLinux()) { why = "pinning vCPU threads needs Linux"; return []; }
        try
        {
            int errno = 0;
            foreach (int bits in MaskBits)
            {
                var mask = new ulong[bits / 64];
                fixed (ulong* m = mask)
                {
                    if (SchedGetAffinity(0, (nuint)(bits / 8), m) < 0) { errno = Marshal.GetLastPInvokeError(); continue; }
                }
                var cpus = new List<int>();
                for (int w = 0; w < mask.Length; w++)
                    for (int b = 0; b < 64; b++)
                        if ((mask[w] >> b & 1) != 0) cpus.Add(w * 64 + b);
                if (cpus.Count == 0) break;
                return [.. cpus];
            }
            why = $"sched_getaffinity failed (errno {errno})";
        }
        catch (EntryPointNotFoundException) { why = "libc has no sched_getaffinity"; }
        catch (DllNotFoundException) { why = "libc not found"; }
        return [];
    }

    /// <summary>
    /// Allow the calling thread to run on <paramref name="cpu"/> only (<see cref="ThreadCpuPin.TryPin"/>,
    /// which also tells a shootdown run on this thread where it is). Returns null when done, or why
    /// not (the call refused: a CPU outside the cgroup's set, a seccomp filter ...).
    /// </summary>
    public static string? TryPinCurrentThread(int cpu) => ThreadCpuPin.TryPin(cpu);
}
