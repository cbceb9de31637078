using System.Diagnostics;
using HdrHistogram;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;

namespace ToyVmm.Bench.Secondary;

/// <summary>
/// Per-invalidation latency percentiles, start to end, of one mapped page
/// while 0, 1 or 2 vCPUs run guest code, each invalidation classed by whether a
/// running vCPU held the page when it started. BenchmarkDotNet's
/// <see cref="InvalidateOnePageBenchmarks"/> gives means per iteration; the
/// targets are stated as percentiles, which only a per-operation histogram shows.
/// Run: <c>ToyVmm.Bench invalidate-latency [samples] [ept|shadow] [vcpu-nice] [all|unpinned|pinned] [both|woken|tick]</c> (the secondary
/// MMU, EPT by default; the vCPU threads' nice value, <see cref="VmConfig.VcpuNice"/>, 0 by default; which set-ups, all
/// by default: the set-ups with vCPUs run unpinned, then with the vCPU threads pinned to CPUs, <see cref="VmConfig.PinVcpus"/>;
/// how the probe waits for the vCPUs to read the page, both by default: asleep on its own timer, or yielding its core).
/// </summary>
/// <remarks>
/// "Held" is read off the shootdown itself: the invalidation posted a flush to a
/// vCPU in guest mode whose TLB filter showed it had taken a pointer into the page
/// (<see cref="ShootdownCounts.Asked"/> minus <see cref="ShootdownCounts.NotHeld"/>
/// grew). The probe is the only invalidator, so the counts' change across one
/// invalidation is that invalidation's. With the following guest the probe names
/// the next page in the guest's mailbox and waits until every vCPU has read it
/// before it invalidates (untimed), so the page is in their TLBs at the start.
/// <para>
/// How it waits decides when the invalidation starts, and on a host with fewer cores than
/// busy threads that matters more than anything the MMU does. Waiting "woken", it sleeps on a
/// high-resolution timer and invalidates as soon as it wakes to find the page held: it
/// preempts a vCPU at a moment of its own, as a reclaimer woken by an allocation does.
/// Waiting at the "tick", it yields its core to the vCPUs and spins: it gets the core back
/// only at the scheduler's tick, when the other CPU is often in its own tick's interrupt for
/// tens of microseconds (bench/RESULTS.md "One-page invalidation: when it starts ...").
/// </para>
/// <para>
/// After the invalidations of each woken, pinned set-up the probe times the machine alone in the
/// same conditions (<see cref="MachineControl"/>): local work, a bare post to the vCPU on the other
/// CPU, and the barrier aimed at its CPU, the pieces a shootdown is made of with the MMU taken away.
/// </para>
/// </remarks>
public static unsafe class InvalidateLatencyProbe
{
    private const ulong Ram = 64UL << 20;
    private const int Pages = 256;
    private const int WarmUp = 4 * Pages;   // invalidations per set-up not recorded
    /// <summary>How long the probe waits for the vCPUs to read the next page before it invalidates anyway.</summary>
    private static readonly long HoldWaitTicks = Stopwatch.Frequency / 200;   // 5 ms

    private enum Guest { None, OtherPage, PageToInvalidate }

    /// <summary>How the probe waits for the vCPUs to read the next page, and so when its invalidation starts.</summary>
    private enum Start { Woken, Tick }

    private sealed class Row
    {
        public readonly HistogramBase All = LatencyScale.NewHistogram();
        public readonly HistogramBase Start = LatencyScale.NewHistogram();
        public readonly HistogramBase End = LatencyScale.NewHistogram();
        public ShootdownCounts Steps;
    }

    /// <returns>The process exit status: 0, or 2 for a bad argument.</returns>
    public static int Run(string[] args)
    {
        int samples = 20_000;
        if (args.Length > 0 && (!int.TryParse(args[0], out samples) || samples <= 0))
        {
            Console.Error.WriteLine($"invalidate-latency: samples must be a positive integer, not '{args[0]}'");
            return 2;
        }
        var mmu = SecondaryMmuKind.Ept;
        if (args.Length > 1 && !Enum.TryParse(args[1], ignoreCase: true, out mmu))
        {
            Console.Error.WriteLine($"invalidate-latency: the MMU is ept or shadow, not '{args[1]}'");
            return 2;
        }
        int nice = 0;
        if (args.Length > 2 && (!int.TryParse(args[2], out nice) || nice is < 0 or > 19))
        {
            Console.Error.WriteLine($"invalidate-latency: the vCPU threads' nice value is 0 to 19, not '{args[2]}'");
            return 2;
        }
        string setups = args.Length > 3 ? args[3] : "all";
        if (setups is not ("all" or "unpinned" or "pinned"))
        {
            Console.Error.WriteLine($"invalidate-latency: the set-ups are all, unpinned or pinned, not '{args[3]}'");
            return 2;
        }
        string startArg = args.Length > 4 ? args[4] : "both";
        Start[] starts = startArg switch
        {
            "both" => [Start.Woken, Start.Tick],
            "woken" => [Start.Woken],
            "tick" => [Start.Tick],
            _ => [],
        };
        if (starts.Length == 0)
        {
            Console.Error.WriteLine($"invalidate-latency: the probe waits for the page to be held woken, tick or both, not '{startArg}'");
            return 2;
        }
        Console.WriteLine($"invalidate latency probe, {mmu.ToString().ToLowerInvariant()} MMU, vCPU threads at nice {nice}: {samples} one-page invalidations per set-up after {WarmUp} unrecorded, " +
                          $"{Environment.ProcessorCount} cores, load average {LoadAverage()}");
        Console.WriteLine("woken: the probe sleeps on its own timer until the running vCPUs have read the page, and invalidates as it wakes" +
                          (TimerSleep.IsPrecise ? "" : " (1 ms sleeps here: no high-resolution timer)"));
        Console.WriteLine("tick: it yields its core to the vCPUs and spins until they have, so it starts when the scheduler gives the core back, at a tick");
        Console.WriteLine("held: a running vCPU held the page when the invalidation started (its shootdown found the page in the vCPU's TLB filter)");
        Console.WriteLine($"  {"page",-10} {"count",7} {"p50",9} {"p90",9} {"p99",9} {"p99.9",9} {"max",10} {"start p50",10} {"end p50",9}");
        var targets = new List<(bool Pinned, Start Start, Row Row)>();
        foreach (var (running, guest, pin, start) in new[]
                 {
                     (0, Guest.None, false), (1, Guest.OtherPage, false), (2, Guest.OtherPage, false),
                     (1, Guest.PageToInvalidate, false), (2, Guest.PageToInvalidate, false),
                     (2, Guest.OtherPage, true), (1, Guest.PageToInvalidate, true), (2, Guest.PageToInvalidate, true),
                 }.SelectMany(s => s.Item2 == Guest.PageToInvalidate ? starts.Select(w => (s.Item1, s.Item2, s.Item3, w)) : [(s.Item1, s.Item2, s.Item3, Start.Woken)]))
        {
            if (pin ? setups == "unpinned" : setups == "pinned") continue;
            var (m, steps) = Measure(running, samples, guest, mmu, nice, pin, start);
            var (held, notHeld, timeouts, mips) = (m.Held, m.NotHeld, m.Timeouts, m.GuestMips);
            string what = guest switch
            {
                Guest.None => "no vCPU running",
                Guest.OtherPage => $"{running} vCPU{(running > 1 ? "s" : "")} running, reading another page (every page lists {(running > 1 ? "them" : "it")} as TLB holder)",
                _ => $"{running} vCPU{(running > 1 ? "s" : "")} running, reading the page about to be invalidated, probe {(start == Start.Woken ? "woken" : "back at a tick")}" +
                     (timeouts > 0 ? $" ({timeouts} invalidations started before every vCPU had read it)" : ""),
            };
            if (pin) what = $"{running} pinned vCPU{(running > 1 ? "s" : "")} ({PinnedCpus(running)})" + what[(what.IndexOf(" running", StringComparison.Ordinal))..];
            long? trip = CrossCpuRoundTrip.MedianNs();
            Console.WriteLine(what + (mips > 0 ? $" (guest {mips:F1} MIPS)" : "") +
                              (trip is long t ? $" (right after: the machine's round trip between two CPUs {t} ns)" : "") + ":");
            Print("held", held);
            Print("not held", notHeld);
            if (steps.Length > 0) Console.WriteLine($"  {"",-10} a vCPU's flush done, p50 after its post (all invalidations of the set-up): {steps}");
            if (m.Control is { } c)
            {
                Console.WriteLine($"  {"",-10} the machine alone, timed right after in the same set-up, one per wake-up as each invalidation (no MMU work):");
                PrintControl("local", c.Local, $"{MachineControl.LocalWorkNs} ns of work on the probe's CPU");
                PrintControl("bare post", c.Post, "a flush of a page no vCPU holds, posted to the vCPU on the other CPU, until it answers");
                PrintControl("barrier", c.Barrier, "the barrier aimed at that vCPU's CPU while it runs");
            }
            if (m.Collections > 0) Console.WriteLine($"  {"",-10} garbage collections during the recorded invalidations: {m.Collections}, {m.CollectionPause.TotalMicroseconds:F0} us paused");
            if (running == 2 && guest == Guest.PageToInvalidate) targets.Add((pin, start, held));
        }
        foreach (var (pinned, start, t) in targets)
        {
            string which = (pinned ? "2 pinned vCPUs running" : "2 vCPUs running") + (start == Start.Woken ? ", probe woken" : ", probe back at a tick");
            if (t.All.TotalCount == 0)
            {
                Console.WriteLine($"target, {which}, page held: no invalidation found the page held");
                continue;
            }
            long p50 = t.All.GetValueAtPercentile(50), p999 = t.All.GetValueAtPercentile(99.9);
            Console.WriteLine($"target, {which}, page held: p50 {Fmt(p50)} (<= 1 us: {(p50 <= 1_000 ? "met" : "missed")}), " +
                              $"p99.9 {Fmt(p999)} (<= 20 us: {(p999 <= 20_000 ? "met" : "missed")}) over {t.All.TotalCount} invalidations");
        }
        return 0;
    }

    /// <summary>
    /// Pinned set-ups: the probe invalidates from a thread pinned (<see cref="ThreadCpuPin"/>) to the CPU of vCPU 0,
    /// the 1st allowed CPU, as a host would pin its reclaimer beside the vCPUs it serves; where the pin is refused
    /// it runs unpinned and says so.
    /// </summary>
    private static T OnPinnedThread<T>(Func<T> body)
    {
        int[] cpus = ToyVmm.Vm.VcpuThreadAffinity.AllowedCpus(out _);
        T result = default!;
        Exception? failed = null;
        var t = new Thread(() =>
        {
            try
            {
                string? refused = cpus.Length == 0 ? "no allowed CPU could be read" : ThreadCpuPin.TryPin(cpus[0]);
                if (refused is not null) Console.WriteLine($"  (the probe's thread runs unpinned: {refused})");
                result = body();
            }
            catch (Exception e) { failed = e; }
        }) { Name = "invalidate-latency probe" };
        t.Start();
        t.Join();
        if (failed is not null) throw new InvalidOperationException("the pinned probe failed", failed);
        return result;
    }

    /// <summary>Where the pinned set-up's vCPUs go (round-robin over the CPUs this process may use), and whether the barrier aimed at a CPU is there.</summary>
    private static string PinnedCpus(int running)
    {
        int n = Environment.ProcessorCount;
        string where = string.Join(", ", Enumerable.Range(0, running).Select(i => $"vCPU {i} on the {Ordinal(i % n)} allowed CPU")) + ", the probe on the 1st";
        return TargetedBarrier.IsAvailable ? where : $"{where}; {TargetedBarrier.Unavailable}";
    }

    private static string Ordinal(int i) => i switch { 0 => "1st", 1 => "2nd", 2 => "3rd", _ => $"{i + 1}th" };

    private static void Print(string name, Row row)
    {
        var h = row.All;
        if (h.TotalCount == 0)
        {
            Console.WriteLine($"  {name,-10} {0,7}");
            return;
        }
        Console.WriteLine($"  {name,-10} {h.TotalCount,7} {Fmt(h.GetValueAtPercentile(50)),9} {Fmt(h.GetValueAtPercentile(90)),9} " +
                          $"{Fmt(h.GetValueAtPercentile(99)),9} {Fmt(h.GetValueAtPercentile(99.9)),9} {Fmt(h.GetMaxValue()),10} " +
                          $"{Fmt(row.Start.GetValueAtPercentile(50)),10} {Fmt(row.End.GetValueAtPercentile(50)),9}");
        Console.WriteLine($"  {"",-10} {row.Steps}");
    }

    private static void PrintControl(string name, HistogramBase h, string what)
    {
        if (h.TotalCount == 0) return;
        Console.WriteLine($"  {name,-10} {h.TotalCount,7} {Fmt(h.GetValueAtPercentile(50)),9} {Fmt(h.GetValueAtPercentile(90)),9} " +
                          $"{Fmt(h.GetValueAtPercentile(99)),9} {Fmt(h.GetValueAtPercentile(99.9)),9} {Fmt(h.GetMaxValue()),10}   {what}");
    }

    private static string Fmt(long ns) => ns < 10_000 ? $"{ns} ns" : ns < 10_000_000 ? $"{ns / 1000.0:F1} us" : $"{ns / 1e6:F1} ms";

    private static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "unknown"; }
    }

    /// <returns>Also the guest's MIPS over the measuring (all vCPUs together; 0 without a guest).</returns>
    /// <returns>Also the p50 time from a vCPU flush's post to its completion, per step of the shootdown (empty without any).</returns>
    private static (Measured Rows, string Steps) Measure(int running, int samples, Guest kind, SecondaryMmuKind mmu,
        int nice, bool pin, Start start)
    {
        using var memory = new HostBackedMemory(Ram, Math.Max(1, running), new GuestMemoryConfig(Ram + (Ram >> 3), Mmu: mmu));
        // OtherPage: the mailbox is never changed, so the vCPUs keep reading the mailbox's own page.
        var guest = kind == Guest.None ? null : SpinGuest.Following(memory.Memory, running, nice, pin);
        try
        {
            var rows = pin ? OnPinnedThread(() => MeasureWith(memory, guest, running, samples, kind, start))
                : MeasureWith(memory, guest, running, samples, kind, start);
            var waits = memory.Snapshot().Total.ShootdownWaits;
            string steps = string.Join(", ", waits.Where(w => w.Value.TotalCount > 0)
                .Select(w => $"{w.Key} {Fmt(w.Value.GetValueAtPercentile(50))} ({w.Value.TotalCount})"));
            return (rows, steps);
        }
        finally { guest?.Dispose(); }
    }

    private static Measured MeasureWith(HostBackedMemory memory, SpinGuest? guest, int running, int samples, Guest kind, Start start)
    {
        // Woken, with the vCPUs and this thread pinned: the machine's controls after the invalidations.
        int here = ThreadCpuPin.Current;
        VcpuLink[] others = guest is null || here < 0 ? [] : [.. guest.Links.Where(l => l.PinnedCpu >= 0 && l.PinnedCpu != here)];
        int[] otherCpus = [.. others.Select(l => l.PinnedCpu).Distinct()];
        var control = kind == Guest.PageToInvalidate && start == Start.Woken && others.Length > 0 ? new MachineControl() : null;
        var pause = new Random(12345);
        long started = Stopwatch.GetTimestamp();
        // Fill through links with the running vCPUs' indices, so that every page lists
        // them as TLB holders and each zap must ask all of them (the worst case).
        VcpuLink[] fillers = [.. Enumerable.Range(0, Math.Max(1, running)).Select(i => new VcpuLink(i))];
        var notifiers = memory.Space.Notifiers;
        var held = new Row();
        var notHeld = new Row();
        int timeouts = 0;
        int done = -WarmUp;
        int gcs = 0;
        TimeSpan gcPause = default;
        while (done < samples)
        {
            for (int i = 0; i < Pages; i++)
                foreach (var f in fillers)
                    memory.Mmu.Translate(f, Gpa.FromPageNumber(PageGfn(i)), AccessKind.Write, out _);
            for (int i = 0; i < Pages && done < samples; i++, done++)
            {
                ulong gpa = PageGfn(i) << Page.Shift;
                if (kind == Guest.PageToInvalidate && !WaitUntilHeld(guest!, gpa, start, pause) && done >= 0) timeouts++;
                var hva = memory.RamHva.Add(gpa);
                var r = new InvalidateRange(hva, hva.Add(Page.Size), InvalidateEvent.Clear, MayBlock: true);
                if (done == 0) { gcs = GC.CollectionCount(0); gcPause = GC.GetTotalPauseDuration(); }
                var before = memory.Shootdowns;
                long t0 = Stopwatch.GetTimestamp();
                notifiers.InvalidateRangeStart(r);
                long tm = Stopwatch.GetTimestamp();
                notifiers.InvalidateRangeEnd(r);
                long t1 = Stopwatch.GetTimestamp();
                if (done < 0) continue;
                var d = Minus(memory.Shootdowns, before);
                var row = d.Asked - d.NotHeld > 0 ? held : notHeld;
                row.All.RecordValue(LatencyScale.TicksToNs(t1 - t0));
                row.Start.RecordValue(LatencyScale.TicksToNs(tm - t0));
                row.End.RecordValue(LatencyScale.TicksToNs(t1 - tm));
                Add(ref row.Steps, d);
            }
        }
        gcs = GC.CollectionCount(0) - gcs;
        gcPause = GC.GetTotalPauseDuration() - gcPause;
        // The controls right after, one per wake-up as each invalidation was (run between the
        // invalidations, they would space those out and leave them colder caches).
        for (int i = 0; control is not null && i < samples; i++)
        {
            TimerSleep.Microseconds(pause.Next(50, 300));
            control.RunLocalWork();
            TimerSleep.Microseconds(pause.Next(50, 300));
            control.RunBarePost(others, PageGfn(Pages + 1));
            TimerSleep.Microseconds(pause.Next(50, 300));
            control.RunBareBarrier(otherCpus);
        }
        double mips = 0;
        if (guest is not null)
        {
            guest.Dispose();
            double us = Stopwatch.GetElapsedTime(started).TotalMicroseconds;
            mips = (guest.Result?.InstructionsRetired ?? 0) / us;
        }
        return new Measured(held, notHeld, timeouts, mips, gcs, gcPause, control);
    }

    /// <summary>One set-up's figures: the rows, the waits that timed out, the guest's speed, the collections, the controls (woken and pinned only).</summary>
    private sealed record Measured(Row Held, Row NotHeld, int Timeouts, double GuestMips, int Collections, TimeSpan CollectionPause, MachineControl? Control);

    /// <summary>Name the page in the guest's mailbox and wait (bounded) until every vCPU has read it.</summary>
    /// <param name="pause">Woken: the sleeps' lengths, 50-300 us, drawn here so that the wake-ups keep no rhythm of their own.</param>
    private static bool WaitUntilHeld(SpinGuest guest, ulong gpa, Start start, Random pause)
    {
        guest.Target = gpa;
        long deadline = Stopwatch.GetTimestamp() + HoldWaitTicks;
        if (start == Start.Woken)
        {
            do
            {
                if (Stopwatch.GetTimestamp() > deadline) return false;
                TimerSleep.Microseconds(pause.Next(50, 300));
            } while (!guest.AllHold(gpa));
            return true;
        }
        var spin = new SpinWait();
        while (!guest.AllHold(gpa))
        {
            if (Stopwatch.GetTimestamp() > deadline) return false;
            spin.SpinOnce(sleep1Threshold: -1);
        }
        return true;
    }

    private static ShootdownCounts Minus(ShootdownCounts a, ShootdownCounts b) => new()
    {
        Asked = a.Asked - b.Asked, NotHeld = a.NotHeld - b.NotHeld, Acknowledged = a.Acknowledged - b.Acknowledged,
        ShotDown = a.ShotDown - b.ShotDown, Waited = a.Waited - b.Waited,
        TargetedBarriers = a.TargetedBarriers - b.TargetedBarriers, ProcessWideBarriers = a.ProcessWideBarriers - b.ProcessWideBarriers,
        SameCpu = a.SameCpu - b.SameCpu,
    };

    private static void Add(ref ShootdownCounts sum, ShootdownCounts d)
    {
        sum.Asked += d.Asked; sum.NotHeld += d.NotHeld; sum.Acknowledged += d.Acknowledged;
        sum.ShotDown += d.ShotDown; sum.Waited += d.Waited;
        sum.TargetedBarriers += d.TargetedBarriers; sum.ProcessWideBarriers += d.ProcessWideBarriers; sum.SameCpu += d.SameCpu;
    }

    private static ulong PageGfn(int i) => (32UL << 20 >> Page.Shift) + (ulong)i;
}
