using System.Diagnostics;
using System.Runtime.InteropServices;

namespace ToyVmm.Cpu.Tier;

/// <summary>
/// A measurement aid, off unless TOYVMM_TIER_PROFILE=1 (then compiled code carries counters and
/// the process prints them at exit on standard error): instructions retired in compiled code,
/// in-region edges taken, block ends through Exec.Chain, hand-overs to the interpreter by
/// guest address, slow reads; per compiled method the thread CPU time of emitting and of the
/// JIT, its IL size and its blocks; and the blocks declined (first op not compilable), which
/// then keep counting their entries, weighted by their ops. How bench/RESULTS.md's "where the
/// time goes" figures were taken; with it off, nothing is emitted and nothing is counted.
/// </summary>
internal static unsafe class TierProfile
{
    public static readonly bool On = Environment.GetEnvironmentVariable("TOYVMM_TIER_PROFILE") == "1";
    public static readonly long* Slots = (long*)NativeMemory.AllocZeroed(1 << 20);
    private static readonly List<string> Names = new();
    private static readonly Dictionary<string, int> Index = new();
    public static long CompileTicks, EmitTicks, Methods, IlBytes;
    public static readonly long ClockStart = Stopwatch.GetTimestamp();
    public static readonly Stopwatch Clock = Stopwatch.StartNew();
    /// <summary>Timeline lines give milliseconds since this <see cref="Clock"/> reading (a driver sets it when a run starts).</summary>
    public static long MarkTicks;
    public static readonly List<string> Timeline = new();
    public static readonly List<(nint B, ulong Va)> Declined = new();

    [DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out TimeSpec ts);
    private struct TimeSpec { public long Sec, Nsec; }
    /// <summary>This thread's CPU time in Stopwatch ticks (CLOCK_THREAD_CPUTIME_ID).</summary>
    public static long ThreadCpu()
    {
        ClockGetTime(3, out var ts);
        return (ts.Sec * 1_000_000_000 + ts.Nsec) * Stopwatch.Frequency / 1_000_000_000;
    }

    public static long* Slot(string name)
    {
        lock (Names)
        {
            if (!Index.TryGetValue(name, out int i)) { i = Names.Count; Names.Add(name); Index[name] = i; }
            return Slots + i;
        }
    }

    static TierProfile()
    {
        if (On) AppDomain.CurrentDomain.ProcessExit += (_, _) => Dump();
    }

    public static void Dump()
    {
        var e = Console.Error;
        e.WriteLine($"tier profile: methods {Methods}, emit {EmitTicks * 1000.0 / Stopwatch.Frequency:F1} ms, jit {CompileTicks * 1000.0 / Stopwatch.Frequency:F1} ms, IL {IlBytes} bytes");
        lock (Names)
            foreach (var (n, i) in Names.Select((n, i) => (n, i)).OrderByDescending(x => Slots[x.i]).Take(40))
                e.WriteLine($"  {Slots[i],14:N0}  {n}");
        foreach (var t in Timeline) e.WriteLine("  " + t);
        lock (Declined)
            foreach (var (b, va) in Declined.OrderByDescending(d => (long)((Block*)d.B)->Hits * ((Block*)d.B)->NumOps).Take(30))
                e.WriteLine($"  declined {va:x} hits {((Block*)b)->Hits} ops {((Block*)b)->NumOps} weight {(long)((Block*)b)->Hits * ((Block*)b)->NumOps}");
        e.WriteLine($"  exit at {(DateTime.Now - Process.GetCurrentProcess().StartTime).TotalMilliseconds:F1} ms");
    }
}
