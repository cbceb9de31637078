using System.Runtime.InteropServices;

namespace ToyVmm.Vm;

/// <summary>
/// Lowers the scheduling weight of the calling vCPU thread (Linux nice value, setpriority on the
/// thread's id). A real host's reclaim and shootdown IPIs preempt the guest; here the invalidator
/// is one more thread competing with the vCPU threads for the cores, and a vCPU thread that runs
/// at a lower weight lets an invalidator that wakes or is runnable get a core sooner
/// (bench/RESULTS.md "Checked loads ..."). Raising a weight is never attempted: it needs privilege.
/// </summary>
internal static partial class VcpuThreadNice
{
    private const int PrioProcess = 0;   // with a thread id: that thread only (Linux)

    [LibraryImport("libc", EntryPoint = "setpriority", SetLastError = true)]
    private static partial int SetPriority(int which, uint who, int prio);

    [LibraryImport("libc", EntryPoint = "getpriority", SetLastError = true)]
    private static partial int GetPriority(int which, uint who);

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetTid();

    /// <summary>The calling thread's nice value (0 where it cannot be read).</summary>
    public static int CurrentThreadNice()
    {
        if (!OperatingSystem.IsLinux()) return 0;
        Marshal.SetLastPInvokeError(0);
        int now = GetPriority(PrioProcess, (uint)GetTid());
        return now == -1 && Marshal.GetLastPInvokeError() != 0 ? 0 : now;
    }

    /// <summary>
    /// Set the calling thread's nice value to <paramref name="nice"/> (1..19) unless it already
    /// runs at that value or lower weight. False where that is not possible (not Linux, refused).
    /// </summary>
    public static bool TryApplyToCurrentThread(int nice)
    {
        if (nice is < 1 or > 19 || !OperatingSystem.IsLinux()) return false;
        try
        {
            uint tid = (uint)GetTid();
            Marshal.SetLastPInvokeError(0);
            int now = GetPriority(PrioProcess, tid);
            if (now == -1 && Marshal.GetLastPInvokeError() != 0) return false;
            if (now >= nice) return true;
            return SetPriority(PrioProcess, tid, nice) == 0;
        }
        catch (EntryPointNotFoundException) { return false; }
        catch (DllNotFoundException) { return false; }
    }
}
