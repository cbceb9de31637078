using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using Xunit;

namespace ToyVmm.Mmu.Tests.Secondary.Contract;

/// <summary>
/// Batches of scattered pages (one notifier start and end listing the pages, as reclaim
/// and page-out send them) over the real host: only the listed pages are zapped, data
/// survives, and under forced interleavings a fault on a listed page retries and never
/// installs the zapped frame, and a batch overlapping a one-page invalidation still
/// holds the fault back until the one-page end. Run for every MMU, and through a grant
/// (whose recall gets the batch).
/// </summary>
public abstract unsafe partial class SecondaryMmuContractTests
{
    /// <summary>Pages 3, 10, 11, 12, 29, 47 and 60: two far apart, a run of three in the middle.</summary>
    private static readonly int[] Scattered = [3, 10, 11, 12, 29, 47, 60];

    private static ulong ValueOf(int page) => 0xBA7C_0000_0000UL + (ulong)page * 0x9E37_79B9UL + 1;

    private void WriteValue(int page) => *(ulong*)Touch(page) = ValueOf(page);

    /// <summary>The host's own books balance (behind a grant, its PFN table holds one more reference per filled page, by design).</summary>
    private void AssertHostConsistent()
    {
        if (!HoldsPageReferences) Assert.Empty(_host.CheckConsistency());
    }

    private PageOutResult PageOutScattered(params int[] pages) => _mm.PageOutPages(pages.Select(HvaOf).ToArray());

    [Fact]
    public void ScatteredBatch_PageOut_ZapsOnlyListedPagesAndKeepsEveryPagesData()
    {
        Make();
        for (int p = 0; p < RamPages; p++) WriteValue(p);
        long invalidations = _host.Stats.Invalidations;

        var r = PageOutScattered(Scattered);

        Assert.Equal(Scattered.Length, r.PagedOut);
        Assert.Equal(1, _host.Stats.Invalidations - invalidations);   // one start/end for the whole batch
        Assert.Equal(Scattered.Length, (int)_mm.LastInvalidation.Pages);
        for (int p = 0; p < RamPages; p++)
        {
            bool listed = Scattered.Contains(p);
            Assert.Equal(!listed, Maps(Gpa.FromPageNumber((ulong)p), out _));
            Assert.Equal(listed, _mm.QueryPte(HvaOf(p)).IsSwap);
        }
        for (int p = 0; p < RamPages; p++) Assert.Equal(ValueOf(p), *(ulong*)Touch(p, AccessKind.Read));
        AssertHostConsistent();
        AssertNoViolation();
    }

    [Fact]
    public void ScatteredBatches_RepeatedPageOutsAndWrites_DataVerifiedWithTheCheckerOn()
    {
        Make(frames: 96);
        var random = new Random(2026);
        var values = new ulong[RamPages];
        for (int round = 0; round < 12; round++)
        {
            for (int i = 0; i < 16; i++)
            {
                int p = random.Next(RamPages);
                values[p] = (ulong)(round * 1000 + i + 1);
                *(ulong*)Touch(p) = values[p];
            }
            var pages = Enumerable.Range(0, 20).Select(_ => random.Next(RamPages)).ToArray();
            PageOutScattered(pages);
            for (int p = 0; p < RamPages; p++)
                if (random.Next(4) == 0) Assert.Equal(values[p], *(ulong*)Touch(p, AccessKind.Read));
        }
        for (int p = 0; p < RamPages; p++) Assert.Equal(values[p], *(ulong*)Touch(p, AccessKind.Read));
        AssertHostConsistent();
        AssertNoViolation();
    }

    /// <summary>
    /// <code>
    ///   fault on a listed page                  page-out of a scattered batch
    ///   get_user_pages(hva) -> frame F (+ref)
    ///                                           start(batch): zap, shoot down, count it
    ///                                           PTE -> swap entry (F busy: kept, or written)
    ///                                           end(batch): sequence moves on
    ///   re-check under the MMU lock: retry
    ///   get_user_pages again -> the page's frame now; install
    /// </code>
    /// </summary>
    [Fact]
    public void FaultRacingScatteredBatch_FaultOnListedPage_RetriesAndNeverInstallsTheZappedFrame()
    {
        Make();
        const int faulting = 11;
        foreach (int p in Scattered) WriteValue(p);
        var gpa = Gpa.FromPageNumber(faulting);
        Assert.Equal(1, _mm.PageOut(HvaOf(faulting), Page.Size).PagedOut);   // the fault below has to bring it back
        int calls = 0;
        Hfn first = default;
        SetAfterGetUserPage(_mmu, (_, frame) =>
        {
            if (Interlocked.Increment(ref calls) != 1) return;
            first = frame;
            var batch = new Thread(() => PageOutScattered(Scattered));
            batch.Start();
            Assert.True(batch.Join(Patience));
        });
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, gpa, AccessKind.Read, out byte* page));
        SetAfterGetUserPage(_mmu, null);

        Assert.True(calls >= 2, "the fault dropped its page and retried");
        Assert.True(Maps(gpa, out var installed));
        Assert.True(_binding.FrameBacks(installed, HvaOf(faulting)), "the entry maps the page's frame of now");
        Assert.Equal(ValueOf(faulting), *(ulong*)page);
        foreach (int p in Scattered) Assert.Equal(ValueOf(p), *(ulong*)Touch(p, AccessKind.Read));
        output.WriteLine($"first frame {first}, installed {installed}, hook calls {calls}");
        AssertHostConsistent();
        AssertNoViolation();
    }

    /// <summary>
    /// A one-page invalidation is in progress over a page when a scattered batch that lists
    /// it starts and ends: the batch's end does not let a fault on the page through; it
    /// waits for the one-page end, then reads the page back from swap.
    /// </summary>
    [Fact]
    public void BatchOverlappingOnePageInvalidation_FaultWaitsForTheOnePageEnd()
    {
        Make();
        const int page = 29;
        foreach (int p in Scattered) WriteValue(p);
        var hva = HvaOf(page);
        var single = new InvalidateRange(hva, hva.Add(Page.Size), InvalidateEvent.Clear, true);
        Assert.True(_binding.Notifiers.InvalidateRangeStart(single));

        Assert.Equal(Scattered.Length, PageOutScattered(Scattered).PagedOut);
        Assert.True(_mm.QueryPte(hva).IsSwap);

        ulong seen = 0;
        var done = new ManualResetEventSlim();
        var fault = new Thread(() => { seen = *(ulong*)Touch(page, AccessKind.Read); done.Set(); });
        fault.Start();
        // A page listed next to it installs meanwhile: the batch is over.
        Assert.Equal(ValueOf(47), *(ulong*)Touch(47, AccessKind.Read));
        Assert.False(done.IsSet, "the one-page invalidation is still in progress");
        Assert.False(Maps(Gpa.FromPageNumber(page), out _));
        _binding.Notifiers.InvalidateRangeEnd(single);
        Assert.True(fault.Join(Patience));
        Assert.Equal(ValueOf(page), seen);
        AssertHostConsistent();
        AssertNoViolation();
    }

    /// <summary>
    /// During a batch, a fault on a listed page waits; a fault on a page between the
    /// listed ones (inside the batch's span, not listed) installs without waiting for it.
    /// </summary>
    [Fact]
    public void BatchInProgress_ListedPageWaits_UnlistedPageBetweenInstalls()
    {
        Make();
        foreach (int p in new[] { 10, 20, 30 }) WriteValue(p);
        var batch = new InvalidateRange(HvaOf(10), HvaOf(31), InvalidateEvent.Clear, true)
        {
            BatchPages = [HvaOf(10).PageNumber, HvaOf(30).PageNumber],
        };
        Assert.True(_binding.Notifiers.InvalidateRangeStart(batch));
        Assert.False(Maps(Gpa.FromPageNumber(10), out _));
        Assert.True(Maps(Gpa.FromPageNumber(20), out _), "an unlisted page keeps its entry");

        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, Gpa.FromPageNumber(21), AccessKind.Write, out _));   // between: no wait
        ulong seen = 0;
        var fault = new Thread(() => seen = *(ulong*)Touch(30, AccessKind.Read));
        fault.Start();
        Assert.False(fault.Join(TimeSpan.FromMilliseconds(50)), "a listed page waits for the batch's end");
        _binding.Notifiers.InvalidateRangeEnd(batch);
        Assert.True(fault.Join(Patience));
        Assert.Equal(ValueOf(30), seen);
        AssertNoViolation();
    }
}
