using System.Collections.Concurrent;
using ToyVmm.Loader;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;
using Xunit;
using Xunit.Abstractions;

namespace ToyVmm.Tests.Vm;

/// <summary>
/// The page-out driver on the real host and EPT-like MMU: what each pick
/// chooses, what a burst takes, reproducible random choices, a shrink of the
/// host pool under a running guest, and a prompt stop.
/// </summary>
public class PageOutDriverTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private const ulong Ram = 2UL << 20;           // 512 pages
    private const ulong RamPages = Ram >> Page.Shift;

    /// <summary>Guest RAM with a host pool large enough that nothing is reclaimed behind the test's back.</summary>
    private static HostBackedMemory NewMemory(ulong ram = Ram) => new(ram, 1, new GuestMemoryConfig(HostMemoryBytes: ram * 4));

    private static PageOutDriver NewDriver(HostBackedMemory m, int seed, params PageOutSchedule[] schedules) =>
        new(m.Space, m.RamHva, m.Mmu.RamBytes, m.Management, schedules, seed);

    /// <summary>Run <paramref name="driver"/> until <paramref name="enough"/> holds for the calls made so far, then stop it.</summary>
    private static List<PageOutCall> RunUntil(PageOutDriver driver, Func<IReadOnlyList<PageOutCall>, bool> enough)
    {
        var calls = new List<PageOutCall>();
        using var done = new ManualResetEventSlim();
        driver.CallMade = c =>
        {
            lock (calls)
            {
                calls.Add(c);
                if (enough(calls)) done.Set();
            }
        };
        driver.Start();
        bool finished = done.Wait(Patience);
        driver.Stop();
        Assert.Null(driver.Failure);
        Assert.True(finished, $"the driver made {calls.Count} calls and was not done");
        lock (calls) return [.. calls];
    }

    /// <summary>Fill every page of guest RAM through the secondary MMU (EPT entries installed, accessed).</summary>
    private static void FillRam(HostBackedMemory m, ulong ram = Ram)
    {
        using var writer = new GuestPhysicalWriter(m.Mmu);
        var page = new byte[Page.Size];
        for (ulong p = 0; p < ram >> Page.Shift; p++)
        {
            BitConverter.TryWriteBytes(page, p + 1);
            writer.Write(Gpa.FromPageNumber(p), page);
        }
    }

    private static HashSet<ulong> Pages(IEnumerable<PageOutCall> calls) =>
        calls.SelectMany(c => c.GuestPages).ToHashSet();

    [Fact]
    public void Random_SameSeed_SameRangesDifferentSeedOthers()
    {
        List<(ulong, ulong)> Ranges(int seed)
        {
            using var m = NewMemory();
            using var driver = NewDriver(m, seed, new PeriodicPageOut(TimeSpan.FromMilliseconds(1), null, PageOutPick.Random));
            var calls = RunUntil(driver, c => c.Count >= 20);
            Assert.All(calls, c => Assert.True(c.Pages is >= 1 and <= 64 && c.FirstPage + c.Pages <= RamPages, c.ToString()));
            return calls.Take(20).Select(c => (c.FirstPage, c.Pages)).ToList();
        }
        var first = Ranges(7);
        Assert.Equal(first, Ranges(7));
        Assert.NotEqual(first, Ranges(8));
    }

    [Fact]
    public void Random_GivenPages_ThatManyAtRandomPlaces()
    {
        using var m = NewMemory();
        using var driver = NewDriver(m, 3, new PeriodicPageOut(TimeSpan.FromMilliseconds(1), 40, PageOutPick.Random));
        var calls = RunUntil(driver, c => c.Count >= 10);
        Assert.All(calls, c => Assert.Equal(40UL, c.Pages));
        Assert.True(calls.Select(c => c.FirstPage).Distinct().Count() > 1);
    }

    [Fact]
    public void Sweep_WalksRamInOrderAndWraps()
    {
        using var m = NewMemory();
        using var driver = NewDriver(m, 1, new PeriodicPageOut(TimeSpan.FromMilliseconds(1), 200, PageOutPick.Sweep));
        var calls = RunUntil(driver, c => c.Count >= 6);
        // 512 pages in steps of 200: [0,200) [200,400) [400,512)+[0,88) [88,288) [288,488) ...
        Assert.Equal(new (ulong, ulong)[] { (0, 200), (200, 200), (400, 112), (0, 88), (88, 200), (288, 200) },
            calls.Take(6).Select(c => (c.FirstPage, c.Pages)));
    }

    /// <summary>
    /// All of RAM is filled, then aged (host and EPT accessed bits cleared, all on the inactive
    /// list), then 32 pages are written again through the EPT: only their secondary accessed
    /// bits say they are in use.
    /// </summary>
    [Theory]
    [InlineData(PageOutPick.Hot)]
    [InlineData(PageOutPick.Cold)]
    public void ColdHot_SecondaryAccessedBits_PickUntouchedOrTouchedPages(PageOutPick pick)
    {
        using var m = NewMemory();
        FillRam(m);
        m.Host.Reclaim.AgeActive(4096, ignoreYoung: false);
        m.Host.Reclaim.AgeActive(4096, ignoreYoung: false);
        Assert.Equal(0, m.Host.ActiveFrames);
        var touched = Enumerable.Range(300, 32).Select(i => (ulong)i).ToHashSet();
        using (var writer = new GuestPhysicalWriter(m.Mmu))
            foreach (ulong p in touched) writer.WriteUInt64(Gpa.FromPageNumber(p), p);

        // A burst of 32 of the 512 resident pages, once.
        using var driver = NewDriver(m, 1, new BurstPageOut(TimeSpan.Zero, 32.0 / RamPages, pick));
        var calls = RunUntil(driver, c => c.Sum(x => (long)x.Pages) >= 32);
        var paged = Pages(calls);
        output.WriteLine($"{pick}: {string.Join(" ", calls.Select(c => $"[{c.FirstPage},+{c.Pages})"))}");
        Assert.Equal(32, paged.Count);
        if (pick == PageOutPick.Hot) Assert.Equal(touched, paged);
        else Assert.Empty(paged.Intersect(touched));
        Assert.Equal(32, driver.PagesPagedOutBy(pick));
        Assert.Equal(RamPages - 32, (ulong)m.Space.ResidentPages);
        Assert.Single(calls);   // the picks went out as one vectored PAGEOUT
    }

    [Theory]
    [InlineData(PageOutPick.Random)]
    [InlineData(PageOutPick.Sweep)]
    [InlineData(PageOutPick.Cold)]
    [InlineData(PageOutPick.Hot)]
    public void Burst_HalfOfResident_PagesOutAboutHalf(PageOutPick pick)
    {
        using var m = NewMemory();
        FillRam(m);
        long resident = m.Space.ResidentPages;
        using var driver = NewDriver(m, 11, new BurstPageOut(TimeSpan.FromMilliseconds(1), 0.5, pick));
        var calls = RunUntil(driver, c => c.Sum(x => (long)x.Pages) >= resident / 2);
        long left = m.Space.ResidentPages;
        output.WriteLine($"{pick}: {resident} resident before, {left} after, {calls.Count} calls, {driver.PagesPagedOut} paged out");
        Assert.InRange(left, resident * 45 / 100, resident * 55 / 100);
        Assert.Equal(resident - left, driver.PagesPagedOutBy(pick));
        if (pick == PageOutPick.Sweep) Assert.Equal(Enumerable.Range(0, (int)(resident / 2)).Select(i => (ulong)i).ToHashSet(), Pages(calls));
        // Every pick of a burst is one vectored PAGEOUT; a random half of the pages is scattered over RAM.
        Assert.Single(calls);
        if (pick == PageOutPick.Random) Assert.NotEqual(calls[0].Pages - 1, calls[0].GuestPages.Max() - calls[0].FirstPage);
        Assert.Contains(driver.Summary(), l => l.Contains($"{pick.ToString().ToLowerInvariant()} {resident - left}"));
        // The guest's data survives: every page reads what was written.
        using var reader = new GuestPhysicalWriter(m.Mmu);
        for (ulong p = 0; p < RamPages; p++)
        {
            var got = new byte[8];
            m.Space.Read(m.RamHva.Add(p << Page.Shift), got);
            Assert.Equal(p + 1, BitConverter.ToUInt64(got));
        }
    }

    [Fact]
    public void Stop_LongWaitsPending_ReturnsPromptlyOnTheDriverThread()
    {
        using var m = NewMemory();
        string? threadName = null;
        using var started = new ManualResetEventSlim();
        var driver = new PageOutDriver(m.Space, m.RamHva, Ram, m.Management,
            [new PeriodicPageOut(TimeSpan.FromHours(1), 8, PageOutPick.Random), new BurstPageOut(TimeSpan.FromHours(2), 0.5, PageOutPick.Cold),
             new HostShrink(1UL << 20, TimeSpan.FromDays(1))], seed: 1)
        {
            ThreadStarted = () => { threadName = Thread.CurrentThread.Name; started.Set(); },
        };
        driver.Start();
        Assert.True(started.Wait(Patience));
        var stopping = new Thread(driver.Dispose);
        stopping.Start();
        Assert.True(stopping.Join(Patience), "Dispose wakes the driver out of its wait");
        Assert.Equal(PageOutDriver.ThreadName, threadName);
        Assert.Equal(0, driver.Calls);
        Assert.Null(driver.Failure);
        driver.Dispose();   // idempotent
    }

    [Fact]
    public void Schedules_IntervalShorthand_BecomesRandomPeriodicAfterTheList()
    {
        var burst = new BurstPageOut(TimeSpan.FromSeconds(2), 0.5, PageOutPick.Cold);
        var config = new GuestMemoryConfig(16UL << 20, PageOutIntervalMs: 5, PageOut: [burst]);
        Assert.Equal(new PageOutSchedule[] { burst, new PeriodicPageOut(TimeSpan.FromMilliseconds(5), null, PageOutPick.Random) }, config.PageOutSchedules());
        Assert.Empty(new GuestMemoryConfig(16UL << 20).PageOutSchedules());
        Assert.Equal(7, PageOutDriver.ScheduleSeed(7, 0));
        Assert.NotEqual(PageOutDriver.ScheduleSeed(7, 1), PageOutDriver.ScheduleSeed(7, 2));
    }

    [Fact]
    public void Describe_EachForm_SpelledAsTheOption()
    {
        Assert.Equal("every=5ms,pick=random", PageOutDriver.Describe(new PeriodicPageOut(TimeSpan.FromMilliseconds(5), null, PageOutPick.Random)));
        Assert.Equal("every=0.5ms,pages=64,pick=sweep", PageOutDriver.Describe(new PeriodicPageOut(TimeSpan.FromMicroseconds(500), 64, PageOutPick.Sweep)));
        Assert.Equal("at=2000ms,fraction=0.25,pick=cold", PageOutDriver.Describe(new BurstPageOut(TimeSpan.FromSeconds(2), 0.25, PageOutPick.Cold)));
        Assert.Equal("shrink=16777216@1000ms", PageOutDriver.Describe(new HostShrink(16UL << 20, TimeSpan.FromSeconds(1))));
    }

    public static TheoryData<PageOutSchedule, string> BadSchedules() => new()
    {
        { new PeriodicPageOut(TimeSpan.Zero, null, PageOutPick.Random), "period" },
        { new PeriodicPageOut(TimeSpan.FromMilliseconds(5), 0, PageOutPick.Sweep), "pages 0" },
        { new PeriodicPageOut(TimeSpan.FromMilliseconds(5), 1, (PageOutPick)9), "pick 9" },
        { new BurstPageOut(TimeSpan.FromSeconds(1), 0, PageOutPick.Cold), "fraction 0" },
        { new BurstPageOut(TimeSpan.FromSeconds(1), 1.5, PageOutPick.Cold), "fraction 1.5" },
        { new BurstPageOut(TimeSpan.FromSeconds(1), double.NaN, PageOutPick.Cold), "fraction NaN" },
        { new BurstPageOut(TimeSpan.FromSeconds(-1), 0.5, PageOutPick.Hot), "negative" },
        { new HostShrink(100, TimeSpan.FromSeconds(1)), "at least one page" },
        { new HostShrink(1UL << 20, TimeSpan.FromSeconds(-1)), "negative" },
    };

    [Theory]
    [MemberData(nameof(BadSchedules))]
    public void Create_BadSchedule_OneLineArgumentException(PageOutSchedule bad, string says)
    {
        var e = Assert.Throws<ArgumentException>(() => new HostBackedMemory(Ram, 1, new GuestMemoryConfig(Ram * 2,
            PageOut: [new PeriodicPageOut(TimeSpan.FromMilliseconds(5), null, PageOutPick.Random), bad])));
        Assert.Contains($"page-out schedule 2 ({PageOutDriver.Describe(bad)})", e.Message);
        Assert.Contains(says, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    /// <summary>
    /// A memory guest on a host that holds its working set, with 2 MiB of guest RAM the
    /// guest never uses filled beforehand; as the guest starts, the host pool shrinks to
    /// an eighth, more than is free: the free frames leave at once, the rest only as
    /// reclaim frees frames in use, and reclaim alone pages the guest out, under the
    /// invariant checker, with 2 vCPUs.
    /// </summary>
    [Theory]
    [InlineData("memseq")]
    [InlineData("memhot")]
    public void HostShrink_RunningMemoryGuestWithChecker_ExitsZeroWithFramesLowered(string guest)
    {
        const ulong ram = 16UL << 20, host = 8UL << 20;
        const int vcpus = 2;
        var image = ElfLoader.LoadFile(GuestFiles.Elf(guest), ram);
        using var backing = new HostBackedMemory(ram, vcpus, new GuestMemoryConfig(HostMemoryBytes: host, Check: true));
        int framesBefore = backing.Host.FrameCount;
        using var console = new MemoryStream();
        using var vm = VirtualMachine.Create(new VmConfig(ram, vcpus, InstructionLimit: 20_000_000_000), image, console, _ => backing.Memory);
        backing.Checker!.WatchVcpus(() => [.. vm.Links.OfType<VcpuLink>()]);
        backing.Checker.Violated += v => vm.Stop(VmOutcome.InvariantViolation, v.ToString());
        // The memory guests work in the low half of RAM above their image; the VMM reserves the top 1 MiB.
        using (var writer = new GuestPhysicalWriter(backing.Mmu))
            writer.Write(new Gpa(ram - (3UL << 20)), Enumerable.Repeat((byte)0x5A, 2 << 20).ToArray());
        int inUse = framesBefore - backing.Host.FreeFrames;
        using var driver = NewDriver(backing, 5, new HostShrink(7UL << 20, TimeSpan.Zero));
        driver.Start();
        var result = vm.Run();
        driver.Stop();
        backing.StopBackground();

        output.WriteLine(System.Text.Encoding.UTF8.GetString(console.ToArray()));
        foreach (var line in backing.Summary().Concat(driver.Summary())) output.WriteLine(line);
        Assert.True(result.IsNormalExit, $"{result.Outcome}: {result.Message}");
        Assert.Equal(0, result.GuestStatus);
        Assert.Null(backing.Checker.FirstViolation);
        Assert.Null(driver.Failure);
        var (requested, granted, atOnce) = driver.ShrinkFrames;
        Assert.Equal(1792, requested);
        Assert.Equal(1792, granted);
        Assert.True(atOnce <= framesBefore - inUse && atOnce < granted, $"{atOnce} free frames left at once, {inUse} were in use");
        Assert.Equal(framesBefore - 1792 + backing.Host.ShrinkDebt, backing.Host.FrameCount);
        Assert.True(backing.Host.RetiredFrames > atOnce, "reclaim freed frames in use and they were retired");
        Assert.True(backing.Host.Stats.PagesWrittenToSwap > 0, "a working set larger than the shrunk pool goes to swap");
        Assert.Equal(0, driver.PagesPagedOut);   // no forced call: reclaim did it
        var inconsistencies = backing.Host.CheckConsistency();
        Assert.True(inconsistencies.Count == 0, string.Join("\n", inconsistencies.Take(20)));
    }

    /// <summary>
    /// Every pick at once (periodic, and bursts) under a running memory guest at a quarter of its RAM in host
    /// frames, with the reclaimer and the invariant checker: cold/hot picks read the LRU
    /// and the EPT accessed bits while vCPUs fault and reclaim runs.
    /// </summary>
    [Fact]
    public void AllPicks_RunningMemoryGuestWithChecker_ExitsZeroAndEachPickPagesOut()
    {
        const ulong ram = 16UL << 20;
        const int vcpus = 2;
        var image = ElfLoader.LoadFile(GuestFiles.Elf("memhot"), ram);
        PageOutSchedule[] schedules =
        [
            new PeriodicPageOut(TimeSpan.FromMilliseconds(2), 32, PageOutPick.Cold),
            new PeriodicPageOut(TimeSpan.FromMilliseconds(3), 16, PageOutPick.Hot),
            new PeriodicPageOut(TimeSpan.FromMilliseconds(5), 64, PageOutPick.Sweep),
            new PeriodicPageOut(TimeSpan.FromMilliseconds(4), null, PageOutPick.Random),
            // Bursts while the guest runs; how much is resident when they come depends on timing.
            new BurstPageOut(TimeSpan.FromMilliseconds(50), 0.25, PageOutPick.Random),
            new BurstPageOut(TimeSpan.FromMilliseconds(100), 0.5, PageOutPick.Hot),
        ];
        using var backing = new HostBackedMemory(ram, vcpus, new GuestMemoryConfig(
            HostMemoryBytes: ram / 4, Check: true, Seed: 9, PageOut: schedules));
        using var console = new MemoryStream();
        using var vm = VirtualMachine.Create(new VmConfig(ram, vcpus, InstructionLimit: 20_000_000_000), image, console, _ => backing.Memory);
        backing.Checker!.WatchVcpus(() => [.. vm.Links.OfType<VcpuLink>()]);
        backing.Checker.Violated += v => vm.Stop(VmOutcome.InvariantViolation, v.ToString());
        var result = vm.Run();
        backing.StopBackground();

        foreach (var line in backing.Summary()) output.WriteLine(line);
        Assert.True(result.IsNormalExit, $"{result.Outcome}: {result.Message}");
        Assert.Equal(0, result.GuestStatus);
        Assert.Null(backing.Checker.FirstViolation);
        Assert.Null(backing.PageOutDriver.Failure);
        foreach (var pick in Enum.GetValues<PageOutPick>())
            Assert.True(backing.PageOutDriver.PagesPagedOutBy(pick) > 0, $"{pick} paged nothing out");
        Assert.Equal(backing.PressurePages, Enum.GetValues<PageOutPick>().Sum(backing.PageOutDriver.PagesPagedOutBy));
        var inconsistencies = backing.Host.CheckConsistency();
        Assert.True(inconsistencies.Count == 0, string.Join("\n", inconsistencies.Take(20)));
    }
}
