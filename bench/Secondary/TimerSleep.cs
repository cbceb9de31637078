using System.Runtime.InteropServices;

namespace ToyVmm.Bench.Secondary;

/// <summary>
/// A sleep of a few microseconds on the kernel's high-resolution timer, with the calling
/// thread's timer slack cut to 1 us: the thread blocks, and wakes at the moment its own timer
/// fires, not at the scheduler's tick. The invalidation probe waits this way to start its
/// invalidations the way a reclaimer woken by an allocation starts (bench/RESULTS.md
/// "One-page invalidation: when it starts ...").
/// </summary>
internal static partial class TimerSleep
{
    private const int ClockMonotonic = 1;
    private const int PrSetTimerSlack = 29;

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_nanosleep")]
    private static partial int ClockNanosleep(int clock, int flags, in Timespec request, nint remaining);

    [LibraryImport("libc", EntryPoint = "prctl", SetLastError = true)]
    private static partial int Prctl(int option, nuint a2, nuint a3, nuint a4, nuint a5);

    [ThreadStatic] private static bool _slackCut;

    /// <summary>True on Linux, where the sleep is <c>clock_nanosleep</c>; elsewhere it falls back to <see cref="Thread.Sleep(int)"/> of 1 ms.</summary>
    public static bool IsPrecise => OperatingSystem.IsLinux();

    /// <summary>Block for <paramref name="microseconds"/> (a signal may end it early, which only shortens one wait).</summary>
    public static void Microseconds(int microseconds)
    {
        if (!IsPrecise)
        {
            Thread.Sleep(1);
            return;
        }
        if (!_slackCut)
        {
            // The default slack (50 us) lets the kernel put the wake-up off to a later interrupt.
            Prctl(PrSetTimerSlack, 1000, 0, 0, 0);
            _slackCut = true;
        }
        var t = new Timespec { Seconds = microseconds / 1_000_000, Nanoseconds = microseconds % 1_000_000 * 1000L };
        ClockNanosleep(ClockMonotonic, 0, in t, 0);
    }
}
