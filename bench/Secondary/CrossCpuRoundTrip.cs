using System.Diagnostics;
using System.Runtime.InteropServices;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Bench.Secondary;

/// <summary>
/// The machine's own speed between two CPUs: the median round trip of a word bounced between two
/// threads pinned to the first two allowed CPUs. A shootdown's cost is counted in such transfers,
/// and on a virtual machine the host may move its CPUs between a fast and a slow placement within
/// seconds (bench/RESULTS.md "One-page invalidation: when it starts ..."), so the probe prints it
/// beside each set-up's figures.
/// </summary>
internal static class CrossCpuRoundTrip
{
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    private struct Words
    {
        [FieldOffset(64)] public long Ping;
        [FieldOffset(192)] public long Pong;
    }

    private sealed class Box
    {
        public Words W;
    }

    /// <returns>The median round trip in nanoseconds, or null with fewer than two CPUs or where threads cannot be pinned.</returns>
    public static long? MedianNs(int trips = 20_000)
    {
        int[] cpus = ToyVmm.Vm.VcpuThreadAffinity.AllowedCpus(out _);
        if (cpus.Length < 2) return null;
        var box = new Box();
        bool pinned = true;
        var answerer = new Thread(() =>
        {
            if (ThreadCpuPin.TryPin(cpus[1]) is not null) { Volatile.Write(ref pinned, false); Volatile.Write(ref box.W.Pong, -1); return; }
            for (long i = 1; i <= trips; i++)
            {
                long ping;
                while ((ping = Volatile.Read(ref box.W.Ping)) != i)
                    if (ping < 0) return;   // the asker gave up
                Volatile.Write(ref box.W.Pong, i);
            }
        }) { IsBackground = true, Name = "round-trip answerer" };
        long[] ns = new long[trips];
        long? result = null;
        var asker = new Thread(() =>
        {
            if (ThreadCpuPin.TryPin(cpus[0]) is not null) { Volatile.Write(ref pinned, false); Volatile.Write(ref box.W.Ping, -1); return; }
            answerer.Start();
            for (long i = 1; i <= trips; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                Volatile.Write(ref box.W.Ping, i);
                long deadline = t0 + Stopwatch.Frequency;   // one second: the answerer cannot be pinned, or never runs
                while (Volatile.Read(ref box.W.Pong) != i)
                    if (Volatile.Read(ref box.W.Pong) < 0 || Stopwatch.GetTimestamp() > deadline) { Volatile.Write(ref box.W.Ping, -1); return; }
                ns[i - 1] = Stopwatch.GetTimestamp() - t0;
            }
            Array.Sort(ns);
            result = (long)(ns[trips / 2] * 1e9 / Stopwatch.Frequency);
        }) { Name = "round-trip asker" };
        asker.Start();
        asker.Join();
        answerer.Join(TimeSpan.FromSeconds(2));
        return Volatile.Read(ref pinned) ? result : null;
    }
}
