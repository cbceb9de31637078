using ToyVmm.Mmu;
using ToyVmm.Mmu.Host;

namespace ToyVmm.Vm;

// What each schedule does when it is due, on the driver thread. Pages are
// guest-physical page numbers; guest RAM is one slot from guest-physical 0
// (HostBackedMemory), so guest page n is host page _ramHva + n.

public sealed partial class PageOutDriver
{
    /// <summary>One schedule's state while the driver runs; touched by the driver thread only.</summary>
    private sealed class ScheduleRun
    {
        private readonly long _everyTicks;   // periodic schedules only

        public ScheduleRun(int index, PageOutSchedule schedule, int seed)
        {
            Index = index;
            Schedule = schedule;
            Rng = new Random(seed);
            (DueTicks, _everyTicks, Pick) = schedule switch
            {
                PeriodicPageOut p => (ToTicks(p.Every), Math.Max(1, ToTicks(p.Every)), (PageOutPick?)p.Pick),
                BurstPageOut b => (ToTicks(b.At), 0L, b.Pick),
                HostShrink s => (ToTicks(s.At), 0L, (PageOutPick?)null),
                _ => throw new ArgumentException($"unsupported page-out schedule {schedule}"),
            };
        }

        public int Index { get; }
        public PageOutSchedule Schedule { get; }
        public Random Rng { get; }
        /// <summary>How pages are picked; null for a shrink, which picks none.</summary>
        public PageOutPick? Pick { get; }
        /// <summary>When it is next due, in stopwatch ticks since Start; long.MaxValue once done.</summary>
        public long DueTicks { get; private set; }
        /// <summary>Sweep: the guest page the next range starts at.</summary>
        public ulong SweepNext { get; set; }

        /// <summary>After a run: a periodic schedule is due one period later, skipping the periods already past; the others are done.</summary>
        public void Reschedule(long nowTicks)
        {
            if (_everyTicks == 0) { DueTicks = long.MaxValue; return; }
            DueTicks += _everyTicks;
            if (DueTicks <= nowTicks) DueTicks += ((nowTicks - DueTicks) / _everyTicks + 1) * _everyTicks;
        }
    }

    private void RunOnce(ScheduleRun run)
    {
        switch (run.Schedule)
        {
            case PeriodicPageOut p: Periodic(run, p); break;
            case BurstPageOut b: Burst(run, b); break;
            case HostShrink s: Shrink(s); break;
        }
    }

    /// <summary><see cref="PeriodicPageOut.Pages"/> pages (or 1 to 64 at random), picked by the schedule's pick.</summary>
    private void Periodic(ScheduleRun run, PeriodicPageOut p)
    {
        ulong count = p.Pages is int n ? (ulong)n : (ulong)run.Rng.Next(1, 65);
        count = Math.Min(count, _ramPages);
        switch (p.Pick)
        {
            case PageOutPick.Random:
                ulong first = (ulong)run.Rng.NextInt64(0, (long)(_ramPages - count + 1));
                PageOutRun(run, first, count);
                break;
            case PageOutPick.Sweep:
                ulong at = run.SweepNext;
                ulong head = Math.Min(count, _ramPages - at);
                PageOutRun(run, at, head);
                if (head < count) PageOutRun(run, 0, count - head);   // wrapped past the end of RAM
                run.SweepNext = (at + count) % _ramPages;
                break;
            default:
                PickAndPageOut(run, (int)count);
                break;
        }
    }

    /// <summary>
    /// <see cref="BurstPageOut.Fraction"/> of the pages resident now: a random
    /// sample of them, the first ones in guest-RAM order (sweep), or the coldest or
    /// hottest by the host.
    /// </summary>
    private void Burst(ScheduleRun run, BurstPageOut b)
    {
        var resident = new Hva[checked((int)_ramPages)];
        int r = _space.ResidentPagesIn(_ramHva, _ramPages << Page.Shift, resident);
        int n = (int)Math.Round(b.Fraction * r, MidpointRounding.AwayFromZero);
        if (n == 0) return;
        switch (b.Pick)
        {
            case PageOutPick.Random:
                // The first n places of a Fisher-Yates shuffle: a uniform sample.
                for (int i = 0; i < n; i++)
                {
                    int j = run.Rng.Next(i, r);
                    (resident[i], resident[j]) = (resident[j], resident[i]);
                }
                PageOutPages(run, resident.AsSpan(0, n));
                break;
            case PageOutPick.Sweep:
                PageOutPages(run, resident.AsSpan(0, n));
                break;
            default:
                PickAndPageOut(run, n);
                break;
        }
    }

    private void Shrink(HostShrink s)
    {
        var r = _space.Host.Shrink(s.Bytes);
        Interlocked.Add(ref _shrinkRequested, r.RequestedFrames);
        Interlocked.Add(ref _shrinkGranted, r.GrantedFrames);
        Interlocked.Add(ref _shrinkAtOnce, r.RetiredNow);
        if (r.Clamped && Interlocked.Exchange(ref _clampWarned, 1) == 0) LogShrinkClamped(_logger, r.RequestedFrames, r.GrantedFrames);
        LogShrunk(_logger, r.GrantedFrames, r.RetiredNow, r.Debt, r.TargetFrames);
    }

    /// <summary>Cold or hot: ask the host which resident pages, then page them out with one vectored call.</summary>
    private void PickAndPageOut(ScheduleRun run, int count)
    {
        var pick = run.Pick == PageOutPick.Hot ? ResidentPagePick.Hot : ResidentPagePick.Cold;
        var picked = new Hva[count];
        int n = _space.PickResidentPages(_ramHva, _ramPages << Page.Shift, pick, picked);
        PageOutPages(run, picked.AsSpan(0, n));
    }

    /// <summary>
    /// Page out the given host pages of guest RAM, wherever they lie, with one vectored
    /// PAGEOUT of the management side: the host batches them (one invalidation and one
    /// shootdown per batch of up to 64 pages) however scattered they are.
    /// </summary>
    private void PageOutPages(ScheduleRun run, Span<Hva> pages)
    {
        if (pages.IsEmpty) return;
        var gfns = new ulong[pages.Length];
        for (int i = 0; i < pages.Length; i++) gfns[i] = pages[i].PageNumber - _ramHva.PageNumber;
        Array.Sort(gfns);
        var gpas = new Gpa[gfns.Length];
        for (int i = 0; i < gfns.Length; i++) gpas[i] = Gpa.FromPageNumber(gfns[i]);
        long done = _mmu.PageOutPages(gpas);
        if (done < 0) throw new InvalidOperationException($"page-out of {gfns.Length} guest pages from 0x{gfns[0]:x} failed with {done}");
        Interlocked.Increment(ref _calls);
        if (done > 0) Interlocked.Add(ref _pagesByPick[(int)run.Pick!.Value], done);
        CallMade?.Invoke(new PageOutCall(run.Index, run.Pick!.Value, gfns[0], (ulong)gfns.Length, done, gfns));
    }

    private void PageOutRun(ScheduleRun run, ulong firstPage, ulong pages)
    {
        if (pages == 0) return;
        long done = PageOutGuestPages(firstPage, pages);
        Interlocked.Increment(ref _calls);
        if (done > 0) Interlocked.Add(ref _pagesByPick[(int)run.Pick!.Value], done);
        CallMade?.Invoke(new PageOutCall(run.Index, run.Pick!.Value, firstPage, pages, done));
    }

    /// <summary>
    /// The one place the driver pages guest memory out: the guest pages
    /// [<paramref name="firstPage"/>, +<paramref name="pages"/>) go to swap, through
    /// the management side's PAGEOUT, which calls the host address space directly.
    /// Returns the pages taken out of memory.
    /// </summary>
    private long PageOutGuestPages(ulong firstPage, ulong pages)
    {
        long done = _mmu.PageOut(Gpa.FromPageNumber(firstPage), pages << Page.Shift);
        if (done < 0) throw new InvalidOperationException($"page-out of guest pages [0x{firstPage:x}, +{pages}) failed with {done}");
        return done;
    }
}
