using ToyVmm.Mmu.Host;
using Xunit;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Host;

public class SwapTests
{
    private sealed class Injector : ISwapFaultInjector
    {
        public Func<uint, int, Exception?>? Write;
        public Func<uint, Exception?>? Read;
        public int MaxBytesPerWriteCall { get; init; }
        public Exception? BeforeWrite(uint firstSlot, int slots) => Write?.Invoke(firstSlot, slots);
        public Exception? BeforeRead(uint slot) => Read?.Invoke(slot);
    }

    [Fact]
    public void PageOut_ThenRead_RestoresContentsFromFile()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(32 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 32; i++) WritePage(mm, a.Add(i * Page.Size), 5, i + 1);
        int free = host.FreeFrames;
        var r = mm.PageOut(a, 32 * Page.Size);
        Assert.Equal(new PageOutResult(32, 0, 0, 0), r);
        Assert.Equal(free + 32, host.FreeFrames);
        Assert.Equal(0, mm.ResidentPages);
        Assert.True(mm.QueryPte(a).IsSwap);
        AssertConsistent(host, "after page-out");
        for (ulong i = 0; i < 32; i++) AssertPage(mm, a.Add(i * Page.Size), 5, i + 1, "after swap-in");
        Assert.Equal(32, host.Stats.SwapInsFromFile);
        AssertConsistent(host, "after swap-in");
    }

    /// <summary>
    /// The vectored write taking fewer bytes than it was given, as a kernel may: the swap space
    /// goes on from where each call stopped, inside a page or at a page's end, and every page
    /// reads back from the file what it held (each one checked against its checksum too).
    /// </summary>
    [Theory]
    [InlineData(1000)]     // every call stops inside a page
    [InlineData(4096)]     // one page a call, at a page's end
    [InlineData(6000)]     // a page and a half: the next call starts mid-page
    [InlineData(12289)]    // three pages and a byte
    public void PageOut_ShortWrites_ResumeWhereEachStoppedAndEveryPageReadsBack(int maxPerCall)
    {
        if (!OperatingSystem.IsLinux()) return;   // the vectored write is Linux's; elsewhere RandomAccess writes whole
        using var host = NewHost(frames: 128);
        host.Swap.FaultInjector = new Injector { MaxBytesPerWriteCall = maxPerCall };
        var mm = host.CreateAddressSpace();
        var a = mm.Map(20 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 20; i++) WritePage(mm, a.Add(i * Page.Size), 13, i + 1);
        Assert.Equal(new PageOutResult(20, 0, 0, 0), mm.PageOut(a, 20 * Page.Size));
        AssertConsistent(host, "after short writes");
        for (ulong i = 0; i < 20; i++) AssertPage(mm, a.Add(i * Page.Size), 13, i + 1, $"page {i} after short writes");
        Assert.Equal(20, host.Stats.SwapInsFromFile);
        Assert.Equal(0, host.Stats.SwapWriteErrors);
    }

    /// <summary>
    /// Slot runs that start off the 64-slot words of the written bitmap and one that crosses
    /// from one 4096-slot bookkeeping chunk into the next: every slot of every run is marked
    /// written and has its checksum in its own chunk, so every page reads back what it held.
    /// </summary>
    [Fact]
    public void PageOut_RunsCrossingBitmapWordsAndABookkeepingChunk_EveryPageReadsBack()
    {
        const ulong Pages = 4160, Step = 520;
        using var host = NewHost(frames: 1024);
        var mm = host.CreateAddressSpace();
        var a = mm.Map((Pages + 3) * Page.Size, HostProtection.ReadWrite);
        // Three pages first, so that every later 64-page batch's run starts at a slot 3 past a word.
        for (ulong i = 0; i < 3; i++) WritePage(mm, a.Add(i * Page.Size), 9, 1);
        Assert.Equal(3, mm.PageOut(a, 3 * Page.Size).Written);
        for (ulong from = 3; from < Pages + 3; from += Step)
        {
            ulong n = Math.Min(Step, Pages + 3 - from);
            for (ulong i = from; i < from + n; i++) WritePage(mm, a.Add(i * Page.Size), 9, 1);
            Assert.Equal((long)n, mm.PageOut(a.Add(from * Page.Size), n * Page.Size).Written);
        }
        Assert.Equal(4095u, mm.QueryPte(a.Add(4095 * Page.Size)).SwapSlot);
        Assert.Equal(4096u, mm.QueryPte(a.Add(4096 * Page.Size)).SwapSlot);   // the run of slots 4091..4154 crosses into the second chunk
        AssertConsistent(host, "after page-out");
        for (ulong i = 0; i < Pages + 3; i++) AssertPage(mm, a.Add(i * Page.Size), 9, 1, $"page {i} after swap-in");
        Assert.Equal(0, host.Stats.SwapChecksumErrors);
        AssertConsistent(host, "after swap-in");
    }

    /// <summary>
    /// A batch gets consecutive slots; once swap-ins have freed slots, the next page-out
    /// reuses the lowest of them first, and every page still reads back what it held.
    /// </summary>
    [Fact]
    public void PageOut_AfterSwapInsFreedSlots_ReusesTheLowestFreeSlotsInOrder()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(16 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 8; i++) WritePage(mm, a.Add(i * Page.Size), 4, 1);
        Assert.Equal(8, mm.PageOut(a, 8 * Page.Size).Written);
        for (ulong i = 0; i < 8; i++) Assert.Equal((uint)i, mm.QueryPte(a.Add(i * Page.Size)).SwapSlot);   // consecutive: one vectored write

        // Writing pages 5 and 2 swaps them in and drops their now stale copies: slots 2 and 5 are free.
        WritePage(mm, a.Add(5 * Page.Size), 4, 2);
        WritePage(mm, a.Add(2 * Page.Size), 4, 2);
        Assert.False(host.Swap.IsSlotInUse(2));
        Assert.False(host.Swap.IsSlotInUse(5));
        for (ulong i = 8; i < 11; i++) WritePage(mm, a.Add(i * Page.Size), 4, 1);
        Assert.Equal(5, mm.PageOut(a, 16 * Page.Size).Written);

        // Pages 2, 5, 8, 9, 10 in address order: the holes 2 and 5 first, then on from the highest slot in use.
        uint[] expected = [2, 5, 8, 9, 10];
        ulong[] pages = [2, 5, 8, 9, 10];
        for (int i = 0; i < pages.Length; i++) Assert.Equal(expected[i], mm.QueryPte(a.Add(pages[i] * Page.Size)).SwapSlot);
        for (ulong i = 0; i < 11; i++) AssertPage(mm, a.Add(i * Page.Size), 4, i is 2 or 5 ? 2UL : 1UL, "after reuse");
        AssertConsistent(host, "after reuse");
    }

    [Fact]
    public void PageOut_CleanSwapCachedPage_DroppedWithoutSecondWrite()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(8 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 8; i++) WritePage(mm, a.Add(i * Page.Size), 6, 1);
        Assert.Equal(8, mm.PageOut(a, 8 * Page.Size).Written);
        for (ulong i = 0; i < 8; i++) AssertPage(mm, a.Add(i * Page.Size), 6, 1, "read back");   // read faults keep the swap copy
        var r = mm.PageOut(a, 8 * Page.Size);
        Assert.Equal(new PageOutResult(0, 8, 0, 0), r);
        Assert.Equal(8, host.Stats.PagesWrittenToSwap);
        // Written again after a change: the stale copy is not reused.
        WritePage(mm, a, 6, 2);
        Assert.Equal(1, mm.PageOut(a, Page.Size).Written);
        AssertPage(mm, a, 6, 2, "rewritten page");
        AssertConsistent(host, "after clean drops");
    }

    [Fact]
    public void PageOut_NeverWrittenPage_DiscardedAsZero()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(4 * Page.Size, HostProtection.ReadWrite);
        Assert.Equal(0UL, mm.ReadUInt64(a));
        var r = mm.PageOut(a, 4 * Page.Size);
        Assert.Equal(new PageOutResult(0, 1, 0, 0), r);
        Assert.True(mm.QueryPte(a).IsNone);
        Assert.Equal(0UL, mm.ReadUInt64(a));
        Assert.Equal(0, host.Swap.SlotsInUse);
    }

    [Fact]
    public void PageOut_WriteFails_PageStaysResidentErrorReported()
    {
        using var host = NewHost(frames: 128);
        var inj = new Injector { Write = (_, _) => new IOException("No space left on device") };
        host.Swap.FaultInjector = inj;
        var mm = host.CreateAddressSpace();
        var a = mm.Map(16 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 16; i++) WritePage(mm, a.Add(i * Page.Size), 7, i + 1);
        var r = mm.PageOut(a, 16 * Page.Size);
        Assert.Equal(16, r.Failed);
        Assert.Equal(0, r.PagedOut);
        Assert.True(host.Stats.SwapWriteErrors > 0);
        Assert.Contains("No space left", host.Stats.LastError);
        AssertConsistent(host, "after failed writes");
        // Reclaim cannot lose them either while the device keeps failing.
        host.ReclaimNow(64, ignoreAccessed: true);
        for (ulong i = 0; i < 16; i++) AssertPage(mm, a.Add(i * Page.Size), 7, i + 1, "after failed page-out");
        Assert.True(host.Stats.SwapCacheHits > 0);
        // The device recovers: the same pages go out and come back intact.
        inj.Write = null;
        Assert.Equal(16, mm.PageOut(a, 16 * Page.Size).Written);
        for (ulong i = 0; i < 16; i++) AssertPage(mm, a.Add(i * Page.Size), 7, i + 1, "after recovery");
        AssertConsistent(host, "after recovery");
    }

    /// <summary>
    /// One page-out batch whose slots form two runs, the second run's write failing: the
    /// first run's pages go out and are freed, the second run's stay in the swap cache, and
    /// every page keeps its contents (each outcome is the page's own, not its neighbour's).
    /// </summary>
    [Fact]
    public void PageOut_OneOfTwoRunsFails_OnlyThatRunsPagesStay()
    {
        using var host = NewHost(frames: 128);
        var inj = new Injector();
        host.Swap.FaultInjector = inj;
        var mm = host.CreateAddressSpace();
        var a = mm.Map(16 * Page.Size, HostProtection.ReadWrite);
        Hva At(ulong i) => a.Add(i * Page.Size);
        for (ulong i = 0; i < 16; i++) WritePage(mm, At(i), 11, i + 1);
        // Pages 0..7 take slots 0..7; dropping 0..3 frees slots 0..3 while pages 4..7 keep 4..7.
        Assert.Equal(8, mm.PageOut(a, 8 * Page.Size).Written);
        mm.DontNeed(a, 4 * Page.Size);
        for (ulong i = 0; i < 4; i++) WritePage(mm, At(i), 12, i + 1);
        // The batch: pages 0..3 (slots 0..3) and 8..15 (slots 8..15), two runs.
        inj.Write = (first, _) => first == 8 ? new IOException("Input/output error") : null;

        var r = mm.PageOut(a, 16 * Page.Size);

        Assert.Equal(4, r.Written);
        Assert.Equal(8, r.Failed);
        for (ulong i = 0; i < 4; i++) Assert.True(mm.QueryPte(At(i)).IsSwap, $"page {i} went out");
        for (ulong i = 0; i < 4; i++) Assert.Equal(i, mm.QueryPte(At(i)).SwapSlot);
        AssertConsistent(host, "after a half-failed batch");
        inj.Write = null;
        for (ulong i = 0; i < 4; i++) AssertPage(mm, At(i), 12, i + 1, "a page of the written run");
        for (ulong i = 4; i < 16; i++) AssertPage(mm, At(i), 11, i + 1, "a page of the failed run or paged out before");
        AssertConsistent(host, "after reading every page back");
    }

    [Fact]
    public void SwapIn_CorruptSlot_ReportsChecksumMismatch()
    {
        string path = Path.Combine(Path.GetTempPath(), $"toyvmm-test-{Guid.NewGuid():N}.swap");
        try
        {
            using var host = NewHost(frames: 128, swapPath: path);
            var mm = host.CreateAddressSpace();
            var a = mm.Map(4 * Page.Size, HostProtection.ReadWrite);
            for (ulong i = 0; i < 4; i++) WritePage(mm, a.Add(i * Page.Size), 8, 1);
            Assert.Equal(4, mm.PageOut(a, 4 * Page.Size).Written);
            uint slot = mm.QueryPte(a.Add(2 * Page.Size)).SwapSlot;
            SwapFileTamper.FlipByte(path, ((long)slot << Page.Shift) + 100);
            Assert.Equal(HostFaultStatus.SwapChecksumMismatch, mm.Fault(a.Add(2 * Page.Size), write: false));
            var e = Assert.Throws<HostMemoryException>(() => mm.ReadUInt64(a.Add(2 * Page.Size)));
            Assert.Equal(HostFaultStatus.SwapChecksumMismatch, e.Status);
            Assert.Contains($"swap checksum mismatch on slot {slot} (the swap file was changed behind the VMM's back?)", e.Message);
            Assert.True(host.Stats.SwapChecksumErrors >= 2);
            // The other pages are intact.
            AssertPage(mm, a.Add(1 * Page.Size), 8, 1, "neighbour of the corrupt slot");
            AssertConsistent(host, "after checksum error");
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void SwapIn_ReadFails_ErrorThenRecovers()
    {
        using var host = NewHost(frames: 128);
        var inj = new Injector { Read = s => new IOException("Input/output error") };
        host.Swap.FaultInjector = inj;
        var mm = host.CreateAddressSpace();
        var a = mm.Map(Page.Size, HostProtection.ReadWrite);
        WritePage(mm, a, 9, 3);
        Assert.Equal(1, mm.PageOut(a, Page.Size).Written);
        Assert.Equal(HostFaultStatus.SwapReadError, mm.Fault(a, write: false));
        Assert.True(mm.QueryPte(a).IsSwap);
        inj.Read = null;
        AssertPage(mm, a, 9, 3, "after the device recovered");
        AssertConsistent(host, "after read error");
    }

    [Fact]
    public void SwapFull_DirtyPagesStay_OomReported()
    {
        using var host = NewHost(frames: 64, swapPages: 16);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(200 * Page.Size, HostProtection.ReadWrite);
        int i = 0;
        HostFaultStatus st = HostFaultStatus.Ok;
        for (; i < 200 && st == HostFaultStatus.Ok; i++) st = mm.Fault(a.Add((ulong)i * Page.Size), write: true);
        Assert.Equal(HostFaultStatus.OutOfMemory, st);
        Assert.True(host.Stats.SwapFull > 0);
        Assert.Equal(16, host.Swap.SlotsInUse);
        AssertConsistent(host, "after swap full");
    }
}
