using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;
using Xunit;

namespace ToyVmm.Tests.Vm;

/// <summary>
/// The vectored PAGEOUT of the management side (<see cref="IGuestMemoryManagement.PageOutPages"/>)
/// over the real host, EPT-like MMU and grant-aware management the page-out driver calls,
/// with the invariant checker on: scattered pages go out in batches of one invalidation
/// each and their data comes back; a fault racing the page-outs on a listed page sees its
/// own last write; a bad entry anywhere in the list is refused with the ABI's -22 before
/// anything changes.
/// </summary>
public class VectoredPageOutTests
{
    private const ulong Ram = 4UL << 20;           // 1024 pages
    private const ulong RamPages = Ram >> Page.Shift;

    private static HostBackedMemory NewMemory() => new(Ram, 1, new GuestMemoryConfig(HostMemoryBytes: Ram * 2, Check: true));

    private static ulong ValueOf(ulong page, ulong version) => (page << 32) | version;

    private static void Fill(HostBackedMemory m, GuestPhysicalWriter writer)
    {
        for (ulong p = 0; p < RamPages; p++) writer.WriteUInt64(Gpa.FromPageNumber(p), ValueOf(p, 1));
    }

    private static ulong ReadBack(HostBackedMemory m, ulong page)
    {
        var got = new byte[8];
        m.Space.Read(m.RamHva.Add(page << Page.Shift), got);
        return BitConverter.ToUInt64(got);
    }

    private static void AssertClean(HostBackedMemory m)
    {
        Assert.Null(m.Checker!.FirstViolation);
        Assert.Empty(m.Host.CheckConsistency());
    }

    /// <summary>100 distinct pages spread over all of RAM, in a random order, one of them listed twice.</summary>
    private static Gpa[] ScatteredList()
    {
        var pages = new Random(7).GetItems(Enumerable.Range(0, (int)RamPages).ToArray(), 400).Distinct().Take(100)
            .Select(p => Gpa.FromPageNumber((ulong)p)).ToList();
        pages.Add(pages[10]);
        return [.. pages];
    }

    [Fact]
    public void PageOutPages_ScatteredList_PagedOutInBatchesAndDataComesBack()
    {
        using var m = NewMemory();
        using (var writer = new GuestPhysicalWriter(m.Mmu)) Fill(m, writer);
        var list = ScatteredList();
        var listed = list.Select(g => g.PageNumber).ToHashSet();
        long invalidations = m.Host.Stats.Invalidations;

        long done = m.Memory.Management.PageOutPages(list);

        Assert.Equal(100, done);
        Assert.Equal(2, m.Host.Stats.Invalidations - invalidations);   // 100 pages: two batches of at most 64, wherever they lie
        for (ulong p = 0; p < RamPages; p++)
            Assert.Equal(listed.Contains(p), m.Space.QueryPte(m.RamHva.Add(p << Page.Shift)).IsSwap);
        Assert.Equal((long)RamPages - 100, m.Space.ResidentPages);
        for (ulong p = 0; p < RamPages; p++) Assert.Equal(ValueOf(p, 1), ReadBack(m, p));
        AssertClean(m);
    }

    [Fact]
    public void PageOutPages_EmptyList_DoesNothing()
    {
        using var m = NewMemory();
        using (var writer = new GuestPhysicalWriter(m.Mmu)) Fill(m, writer);
        long invalidations = m.Host.Stats.Invalidations;
        Assert.Equal(0, m.Memory.Management.PageOutPages([]));
        Assert.Equal(invalidations, m.Host.Stats.Invalidations);
        Assert.Equal((long)RamPages, m.Space.ResidentPages);
    }

    public static TheoryData<ulong> BadEntries() => new()
    {
        0x1008,                 // not page-aligned
        Ram,                    // the first page past the end of RAM
        Ram + 5 * Page.Size,    // further out
        ulong.MaxValue & ~Page.OffsetMask,   // an address that wraps any range check done by adding
    };

    [Theory]
    [MemberData(nameof(BadEntries))]
    public void PageOutPages_OneBadEntryInAGoodList_MinusEinvalAndNothingChanges(ulong bad)
    {
        using var m = NewMemory();
        using (var writer = new GuestPhysicalWriter(m.Mmu)) Fill(m, writer);
        var list = ScatteredList().ToList();
        list.Insert(50, new Gpa(bad));   // good entries before and after it
        long invalidations = m.Host.Stats.Invalidations;
        long written = m.Host.Stats.PagesWrittenToSwap;
        int slots = m.Host.Swap.SlotsInUse;

        Assert.Equal(GuestRange.Invalid, m.Memory.Management.PageOutPages(list.ToArray()));
        Assert.Equal(GuestRange.Invalid, m.Management.PageOutPages(list.ToArray()));   // the manager under the grant-aware side

        Assert.Equal(invalidations, m.Host.Stats.Invalidations);
        Assert.Equal(written, m.Host.Stats.PagesWrittenToSwap);
        Assert.Equal(slots, m.Host.Swap.SlotsInUse);
        Assert.Equal((long)RamPages, m.Space.ResidentPages);
        for (ulong p = 0; p < RamPages; p++) Assert.Equal(ValueOf(p, 1), ReadBack(m, p));
        AssertClean(m);
    }

    /// <summary>
    /// A writer faults the listed pages back in (through the secondary MMU, as a vCPU does)
    /// and writes a new version of each while vectored page-outs of the same list run on
    /// another thread: every write lands, whichever side gets a page first.
    /// </summary>
    [Fact]
    public void PageOutPages_RacingFaultsOnListedPages_EveryPageHoldsItsLastWrite()
    {
        using var m = NewMemory();
        var list = ScatteredList();
        var distinct = list.Select(g => g.PageNumber).Distinct().ToArray();
        var last = new ulong[RamPages];
        using var writer = new GuestPhysicalWriter(m.Mmu);
        Fill(m, writer);
        Array.Fill(last, 1UL);
        using var stop = new CancellationTokenSource();
        long pagedOut = 0;
        Exception? failure = null;
        var pager = new Thread(() =>
        {
            try
            {
                for (int round = 0; round < 400 && (round == 0 || !stop.IsCancellationRequested); round++)
                {
                    long done = m.Memory.Management.PageOutPages(list);
                    Assert.InRange(done, 0, distinct.Length);
                    pagedOut += done;
                }
            }
            catch (Exception e) { failure = e; }
        }) { IsBackground = true, Name = "vectored page-out" };
        pager.Start();
        try
        {
            for (ulong version = 2; version < 60; version++)
                foreach (ulong p in distinct)
                {
                    writer.WriteUInt64(Gpa.FromPageNumber(p), ValueOf(p, version));
                    last[p] = version;
                }
        }
        finally
        {
            stop.Cancel();
            pager.Join();
        }
        Assert.Null(failure);
        Assert.True(pagedOut > 0, "no page-out overlapped the writes");
        m.Memory.Management.PageOutPages(list);   // and once more at rest: what goes out comes back
        for (ulong p = 0; p < RamPages; p++) Assert.Equal(ValueOf(p, last[p]), ReadBack(m, p));
        AssertClean(m);
    }
}
