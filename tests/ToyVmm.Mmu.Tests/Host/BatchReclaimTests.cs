using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using Xunit;
using Xunit.Abstractions;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Host;

/// <summary>
/// Reclaim unmaps runs of nearby pages with one invalidation each (one notifier start
/// and end, one zap and shootdown in the EPT MMU), under forced interleavings with a
/// secondary fault and with a one-page invalidation, with the invariant checker on.
/// </summary>
public sealed unsafe class BatchReclaimTests : IDisposable
{
    private const int RamPages = 256;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);
    private readonly ITestOutputHelper _output;
    private readonly HostMemory _host;
    private readonly HostAddressSpace _mm;
    private readonly Hva _ram;
    private readonly EptMmu _mmu;
    private readonly MmuInvariantChecker _checker = new();
    private readonly VcpuLink _vcpu = new(0);
    private readonly Recorder _recorder = new();

    /// <summary>Records the invalidations that reach a subscriber; can hold the first reclaim start.</summary>
    private sealed class Recorder : IMmuNotifierSubscriber
    {
        public readonly List<InvalidateRange> Starts = new();
        public bool InvalidateRangeStart(in InvalidateRange range)
        {
            lock (Starts) Starts.Add(range);
            return true;
        }

        public void InvalidateRangeEnd(in InvalidateRange range) { }

        public List<InvalidateRange> ReclaimStarts()
        {
            lock (Starts) return Starts.Where(r => r.Cause == InvalidateCause.Reclaim).ToList();
        }
    }

    public BatchReclaimTests(ITestOutputHelper output)
    {
        _output = output;
        _host = NewHost(frames: 1024);
        _mm = _host.CreateAddressSpace();
        _ram = _mm.Map(RamPages * Page.Size, HostProtection.ReadWrite);
        _host.FrameFreed = _checker.OnFrameFree;
        _checker.WatchVcpus(() => [_vcpu]);
        _mmu = new EptMmu(new SecondaryHostBinding(_mm), RamPages * Page.Size, _ram) { Checker = _checker };
        _mmu.AttachVcpu(_vcpu);
        _mm.Notifiers.Register(_recorder);
    }

    public void Dispose()
    {
        _mmu.Dispose();
        _mm.Dispose();
        _host.Dispose();
    }

    private static ulong ValueOf(int page) => 0x5EED_0000_0000UL + (ulong)page * 0x9E37_79B9UL + 1;

    /// <summary>Write the page's value through the EPT MMU (a secondary fault, then the host frame).</summary>
    private void WriteThroughMmu(int page)
    {
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, Gpa.FromPageNumber((ulong)page), AccessKind.Write, out byte* p));
        *(ulong*)p = ValueOf(page);
    }

    private ulong ReadThroughMmu(int page)
    {
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, Gpa.FromPageNumber((ulong)page), AccessKind.Read, out byte* p));
        ulong v = *(ulong*)p;
        return v;
    }

    private bool Maps(int page, out Hfn frame)
    {
        var e = _mmu.Table.Lookup((ulong)page);
        frame = e.Frame;
        return e.IsPresent;
    }

    private void AssertClean()
    {
        _output.WriteLine(_checker.FirstViolation?.ToString() ?? $"no violation in {_checker.Checks} checks");
        Assert.Equal(0, _checker.ViolationCount);
        Assert.Empty(_host.CheckConsistency());
    }

    [Fact]
    public void Reclaim_AdjacentPages_OneInvalidationPerRunNotPerPage()
    {
        for (int p = 0; p < 128; p++) WriteThroughMmu(p);
        long postedBefore = _vcpu.PostedGeneration;

        int freed = _host.ReclaimNow(128, ignoreAccessed: true);

        var starts = _recorder.ReclaimStarts();
        _output.WriteLine($"freed {freed}, {starts.Count} reclaim invalidations: {string.Join(", ", starts.Select(r => r.Pages))} pages");
        Assert.True(freed >= 128, $"freed {freed}");
        Assert.Equal(_host.Stats.ReclaimRuns, starts.Count);
        // Batches of 32 adjacent pages: one run each, not one invalidation per page.
        Assert.True(starts.Count * 16 <= freed, $"{starts.Count} invalidations for {freed} pages");
        Assert.True(starts.Max(r => r.Pages) > 1);
        Assert.True(starts.All(r => r.Pages <= (ulong)HostAddressSpace.MaxBatchPages));
        // The EPT MMU zapped each run once, shooting its holder down at most once per run.
        _output.WriteLine($"flushes posted to the vCPU: {_vcpu.PostedGeneration - postedBefore}");
        Assert.True(_vcpu.PostedGeneration - postedBefore <= starts.Count);
        for (int p = 0; p < 128; p++) Assert.False(Maps(p, out _), $"page {p} still in the EPT");
        for (int p = 0; p < 128; p++) Assert.Equal(ValueOf(p), ReadThroughMmu(p));
        AssertClean();
    }

    /// <summary>
    /// Pages touched in scattered order (every 7th page, so no two are near): reclaim
    /// still unmaps each pass with one invalidation that lists its pages, zaps only
    /// those (the pages between keep their EPT entries) and shoots the vCPU down once.
    /// </summary>
    [Fact]
    public void Reclaim_ScatteredPages_OneInvalidationPerBatchListingItsPages()
    {
        var scattered = Enumerable.Range(0, 32).Select(i => i * 7).ToArray();
        foreach (int p in scattered) WriteThroughMmu(p);
        foreach (int p in Enumerable.Range(0, 224).Where(p => p % 7 != 0)) WriteThroughMmu(p);   // younger: reclaimed later
        long postedBefore = _vcpu.PostedGeneration;

        int freed = _host.ReclaimNow(32, ignoreAccessed: true);

        var starts = _recorder.ReclaimStarts();
        _output.WriteLine($"freed {freed}; {string.Join(", ", starts)}");
        Assert.True(freed >= 32, $"freed {freed}");
        var first = starts[0];
        Assert.NotNull(first.BatchPages);
        Assert.Equal(scattered.Select(p => _ram.Add((ulong)p * Page.Size).PageNumber), first.BatchPages!);
        Assert.True(_vcpu.PostedGeneration - postedBefore <= starts.Count, "one shootdown per batch at most");
        foreach (int p in scattered) Assert.False(Maps(p, out _), $"page {p} still in the EPT");
        Assert.True(Maps(1, out _) && Maps(8, out _), "pages between the listed ones keep their entries");
        foreach (int p in scattered) Assert.Equal(ValueOf(p), ReadThroughMmu(p));
        AssertClean();
    }

    /// <summary>
    /// PAGEOUT of a sparse range (a resident page every 8 pages over all 256): its batches
    /// take resident pages, not ranges of 64 pages, so the 32 pages go out in one
    /// invalidation listing them, and the pages between keep their entries.
    /// </summary>
    [Fact]
    public void PageOut_SparseRange_OneInvalidationListingTheResidentPages()
    {
        for (int p = 0; p < RamPages; p += 8) WriteThroughMmu(p);
        long before = _host.Stats.Invalidations;

        var r = _mm.PageOut(_ram, RamPages * Page.Size);

        Assert.Equal(RamPages / 8, r.PagedOut);
        Assert.Equal(1, _host.Stats.Invalidations - before);
        Assert.Equal(Enumerable.Range(0, RamPages / 8).Select(i => _ram.Add((ulong)i * 8 * Page.Size).PageNumber), _mm.LastInvalidation.BatchPages!);
        for (int p = 0; p < RamPages; p += 8) Assert.Equal(ValueOf(p), ReadThroughMmu(p));
        AssertClean();
    }

    /// <summary>PAGEOUT of more resident pages than a batch holds: batches of at most MaxBatchPages, every page out, data kept.</summary>
    [Fact]
    public void PageOut_MoreThanABatch_BoundedBatchesAllPagesOut()
    {
        for (int p = 0; p < 200; p++) WriteThroughMmu(p);
        long before = _host.Stats.Invalidations;

        var r = _mm.PageOut(_ram, RamPages * Page.Size);

        Assert.Equal(200, r.PagedOut);
        Assert.Equal((200 + HostAddressSpace.MaxBatchPages - 1) / HostAddressSpace.MaxBatchPages, _host.Stats.Invalidations - before);
        for (int p = 0; p < 200; p++) Assert.Equal(ValueOf(p), ReadThroughMmu(p));
        AssertClean();
    }

    /// <summary>
    /// A fault on an untouched page between reclaimed ones: get_user_pages zero-fills it,
    /// then (paused there) a reclaim batch unmaps its neighbours with one invalidation
    /// whose span covers the faulting page. The fault's re-check sees the moved sequence,
    /// retries and installs the page's frame; the neighbours come back from swap.
    /// </summary>
    [Fact]
    public void FaultRacingBatch_RunSpansTheFaultingPage_FaultRetriesAndInstallsTheHostFrame()
    {
        const int faulting = 10;
        for (int p = 0; p < 32; p++) if (p != faulting) WriteThroughMmu(p);
        for (int p = 100; p < 164; p++) WriteThroughMmu(p);   // younger pages, so reclaim takes 0..31 first
        int calls = 0, freed = 0;
        _mmu.AfterGetUserPageHook = (gpa, _) =>
        {
            if (gpa.PageNumber != faulting || Interlocked.Increment(ref calls) != 1) return;
            var reclaim = new Thread(() => freed = _host.ReclaimNow(31, ignoreAccessed: true));
            reclaim.Start();
            Assert.True(reclaim.Join(Patience));
        };
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, Gpa.FromPageNumber(faulting), AccessKind.Write, out byte* page));
        *(ulong*)page = ValueOf(faulting);
        _mmu.AfterGetUserPageHook = null;

        var starts = _recorder.ReclaimStarts();
        _output.WriteLine($"freed {freed}; fault hook calls {calls}; runs {string.Join(", ", starts.Select(r => r.ToString()))}");
        Assert.Contains(starts, r => r.Start.Value <= _ram.Add(faulting * Page.Size).Value && _ram.Add(faulting * Page.Size).Value < r.End.Value);
        Assert.True(calls >= 2, "the fault dropped its first page and retried");
        Assert.True(Maps(faulting, out var frame));
        Assert.True(_mm.QueryPte(_ram.Add(faulting * Page.Size)).IsPresent);
        Assert.Equal(frame.Value, _mm.QueryPte(_ram.Add(faulting * Page.Size)).Frame);
        for (int p = 0; p < 32; p++) Assert.Equal(ValueOf(p), ReadThroughMmu(p));
        AssertClean();
    }

    /// <summary>
    /// A one-page invalidation (as another host event would start) is in progress over a
    /// page when a reclaim batch runs over it and its neighbours and ends: a fault on that
    /// page must still wait for the one-page invalidation, then finds the page in swap.
    /// </summary>
    [Fact]
    public void BatchOverlappingOnePageInvalidation_FaultWaitsForBothThenReadsTheSwappedPage()
    {
        const int page = 5;
        for (int p = 0; p < 32; p++) WriteThroughMmu(p);
        for (int p = 100; p < 164; p++) WriteThroughMmu(p);
        var hva = _ram.Add(page * Page.Size);
        var single = new InvalidateRange(hva, hva.Add(Page.Size), InvalidateEvent.Clear, true);
        _mm.Notifiers.InvalidateRangeStart(single);

        int freed = _host.ReclaimNow(32, ignoreAccessed: true);
        Assert.True(freed >= 32, $"freed {freed}");
        Assert.True(_mm.QueryPte(hva).IsSwap, "the batch paged the page out");

        ulong seen = 0;
        var fault = new Thread(() => seen = ReadThroughMmu(page));
        fault.Start();
        // The one-page range is still in progress: the fault cannot install.
        Assert.False(fault.Join(TimeSpan.FromMilliseconds(100)));
        Assert.False(Maps(page, out _));
        _mm.Notifiers.InvalidateRangeEnd(single);
        Assert.True(fault.Join(Patience));
        Assert.Equal(ValueOf(page), seen);
        for (int p = 0; p < 32; p++) Assert.Equal(ValueOf(p), ReadThroughMmu(p));
        AssertClean();
    }

    /// <summary>
    /// A one-page DONTNEED racing a batch: the batch's first invalidation is held open
    /// (its subscriber blocks, as a slow shootdown would) while a discard of a page in the
    /// run waits for the address-space lock. The discard lands after the batch: the page
    /// reads zero, its swap slot is gone, the neighbours keep their data.
    /// </summary>
    [Fact]
    public void DiscardRacingBatch_DiscardWaitsForTheRun_PageZeroNeighboursKept()
    {
        const int page = 7;
        for (int p = 0; p < 32; p++) WriteThroughMmu(p);
        for (int p = 100; p < 164; p++) WriteThroughMmu(p);
        var holding = new ManualResetEventSlim();
        var release = new ManualResetEventSlim();
        var gate = new GateSubscriber(holding, release);
        _mm.Notifiers.Register(gate);

        var reclaim = new Thread(() => _host.ReclaimNow(32, ignoreAccessed: true));
        reclaim.Start();
        Assert.True(holding.Wait(Patience), "the batch's invalidation started");
        var discard = new Thread(() => _mm.DontNeed(_ram.Add(page * Page.Size), Page.Size));
        discard.Start();
        Assert.False(discard.Join(TimeSpan.FromMilliseconds(100)));   // serialised behind the batch
        release.Set();
        Assert.True(reclaim.Join(Patience));
        Assert.True(discard.Join(Patience));
        _mm.Notifiers.Unregister(gate);

        Assert.Equal(0UL, ReadThroughMmu(page));
        for (int p = 0; p < 32; p++) if (p != page) Assert.Equal(ValueOf(p), ReadThroughMmu(p));
        AssertClean();
    }

    /// <summary>Holds the first reclaim invalidation start until released.</summary>
    private sealed class GateSubscriber(ManualResetEventSlim holding, ManualResetEventSlim release) : IMmuNotifierSubscriber
    {
        private int _held;
        public bool InvalidateRangeStart(in InvalidateRange range)
        {
            if (range.Cause == InvalidateCause.Reclaim && Interlocked.Exchange(ref _held, 1) == 0)
            {
                holding.Set();
                release.Wait(Patience);
            }
            return true;
        }

        public void InvalidateRangeEnd(in InvalidateRange range) { }
    }
}
