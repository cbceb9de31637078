using System.Runtime.InteropServices;

namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// The barrier of a TLB shootdown aimed at one CPU: Linux <c>membarrier</c>
/// (<c>MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ</c> with <c>MEMBARRIER_CMD_FLAG_CPU</c>), which
/// interrupts that CPU only, and only when a thread of this process runs there. It stands in
/// for <see cref="Interlocked.MemoryBarrierProcessWide"/> when every vCPU it must order is
/// pinned to a CPU (mmu/LOCKING.md "TLB shootdown", "The barrier aimed at a pinned vCPU's CPU").
/// </summary>
/// <remarks>
/// The process-wide barrier interrupts every CPU that runs a thread of the process, and on
/// the 2-core test machine that is always the other core, whose interrupt costs 9-15 us. The
/// targeted form costs about 0.4 us when the CPU runs no thread of ours (the invalidator's own
/// CPU, where a vCPU pinned there cannot be running). Available on Linux x86-64 once the process
/// has registered for it (<see cref="IsAvailable"/>); every caller falls back to the
/// process-wide barrier otherwise, and when a call is refused.
/// </remarks>
public static partial class TargetedBarrier
{
    private const long SysMembarrier = 324;   // x86-64
    private const int CmdPrivateExpeditedRseq = 1 << 7;
    private const int CmdRegisterPrivateExpeditedRseq = 1 << 8;
    private const int FlagCpu = 1 << 0;

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall3(long number, long a, long b, long c);

    private static readonly Lazy<bool> Registered = new(Register);
    private static int _refusals;

    /// <summary>
    /// True when the targeted barrier can be used: Linux x86-64, and the process's registration
    /// (<c>MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ</c>, made on the first call) was accepted.
    /// </summary>
    public static bool IsAvailable => Registered.Value;

    /// <summary>Why the targeted barrier is not available, or null when it is.</summary>
    public static string? Unavailable { get; private set; }

    /// <summary>Targeted calls the kernel refused since start-up (each one fell back to the process-wide barrier).</summary>
    public static int Refusals => Volatile.Read(ref _refusals);

    private static bool Register()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            Unavailable = "the barrier aimed at one CPU needs Linux on x86-64";
            return false;
        }
        try
        {
            if (Syscall3(SysMembarrier, CmdRegisterPrivateExpeditedRseq, 0, 0) == 0) return true;
            Unavailable = $"membarrier registration refused (errno {Marshal.GetLastPInvokeError()})";
        }
        catch (EntryPointNotFoundException) { Unavailable = "libc has no syscall entry point"; }
        catch (DllNotFoundException) { Unavailable = "libc not found"; }
        return false;
    }

    /// <summary>
    /// The CPU the calling thread runs on (<c>sched_getcpu</c>), or -1 where it cannot be told.
    /// The thread may move right after: callers use it as a hint (which vCPUs cannot be running
    /// now), never for correctness.
    /// </summary>
    public static int CurrentCpu()
    {
        return IsAvailable ? ThreadCpuPin.CpuNow() : -1;
    }

    /// <summary>
    /// A full barrier on this thread and on whatever thread of the process runs on
    /// <paramref name="cpu"/> (an interrupt to it only when one does). False when the
    /// barrier is not available or the kernel refused the call (an offline CPU, say): the
    /// caller must then use the process-wide barrier.
    /// </summary>
    public static bool TryOn(int cpu)
    {
        if (cpu < 0 || !IsAvailable) return false;
        if (Syscall3(SysMembarrier, CmdPrivateExpeditedRseq, FlagCpu, cpu) == 0) return true;
        Interlocked.Increment(ref _refusals);
        return false;
    }
}
