using Xunit;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Tests.Secondary;

/// <summary>The shared notifier range walk: slots met, on-lock once, a handler per slot, flush on return, may-block.</summary>
public class SlotRangeWalkerTests
{
    private static readonly Hva A = new(0x7f00_0000_0000), B = new(0x7f10_0000_0000);

    private sealed class Flush : IRemoteTlbFlush
    {
        public readonly List<(ulong Holders, ulong First, ulong Last)> Calls = new();
        public Lock? MustHold;
        /// <summary>The frames each batch flush listed (a range flush lists none).</summary>
        public readonly List<ulong[]> Listed = new();
        public void FlushRemoteTlbsLocked(ulong holders, ulong firstGfn, ulong lastGfn)
        {
            Assert.True(MustHold is null || MustHold.IsHeldByCurrentThread, "the flush runs under the MMU lock");
            Calls.Add((holders, firstGfn, lastGfn));
        }

        public void FlushRemoteTlbsLocked(ulong holders, ulong firstGfn, ulong lastGfn, ReadOnlySpan<ulong> gfns)
        {
            FlushRemoteTlbsLocked(holders, firstGfn, lastGfn);
            Listed.Add(gfns.ToArray());
        }
    }

    /// <summary>Records what the walk called; returns <see cref="Holders"/> from every slot.</summary>
    private struct Recorder(List<string> log, ulong holders, Lock? mustHold) : IGfnRangeHandler
    {
        public void OnLockBatch(ulong firstGfn, ulong lastGfn, ReadOnlySpan<ulong> gfns)
        {
            Assert.True(mustHold is null || mustHold.IsHeldByCurrentThread, "on-lock runs under the MMU lock");
            log.Add($"onlock {firstGfn:x}-{lastGfn:x} [{string.Join(' ', gfns.ToArray().Select(g => g.ToString("x")))}]");
        }

        public void OnLock(ulong firstGfn, ulong lastGfn)
        {
            Assert.True(mustHold is null || mustHold.IsHeldByCurrentThread, "on-lock runs under the MMU lock");
            log.Add($"onlock {firstGfn:x}-{lastGfn:x}");
        }

        public ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn)
        {
            log.Add($"slot{slot.Id} {firstGfn:x}-{lastGfn:x}");
            return holders;
        }
    }

    /// <summary>
    /// Two slots: guest frames 0..15 at A, and 0x100..0x107 at B, or right after
    /// A's pages in host-virtual space when <paramref name="adjacent"/> (one host
    /// range can then meet both).
    /// </summary>
    private static (SlotRangeWalker walker, Lock mmuLock, Flush flush) Make(bool adjacent = false)
    {
        var slots = new SlotTable();
        slots.Add(new MemorySlot(0, new Gpa(0), 16 * Page.Size, A));
        slots.Add(new MemorySlot(1, Gpa.FromPageNumber(0x100), 8 * Page.Size, adjacent ? A.Add(16 * Page.Size) : B));
        var mmuLock = new Lock();
        var flush = new Flush { MustHold = mmuLock };
        return (new SlotRangeWalker(mmuLock, slots, flush), mmuLock, flush);
    }

    [Fact]
    public void Walk_RangeMeetsNoSlot_CallsNothing()
    {
        var (walker, mmuLock, flush) = Make();
        var log = new List<string>();
        var h = new Recorder(log, 1, mmuLock);
        var r = walker.Walk(new HvaRangeWalk(A.Add(16 * Page.Size), A.Add(32 * Page.Size), FlushOnReturn: true), ref h);
        Assert.Equal(WalkOutcome.NoSlot, r.Outcome);
        Assert.Empty(log);
        Assert.Empty(flush.Calls);
    }

    [Fact]
    public void Walk_RangeOverTwoSlots_OnLockOnceWithTheSpanThenOneHandlerPerSlot()
    {
        var (walker, mmuLock, flush) = Make(adjacent: true);
        var log = new List<string>();
        var h = new Recorder(log, 0b100, mmuLock);
        var r = walker.Walk(new HvaRangeWalk(A.Add(14 * Page.Size), A.Add(19 * Page.Size), FlushOnReturn: true), ref h);
        Assert.Equal(WalkOutcome.Done, r.Outcome);
        Assert.Equal(["onlock e-102", "slot0 e-f", "slot1 100-102"], log);
        Assert.Equal([(0b100UL, 0xeUL, 0x102UL)], flush.Calls);
        Assert.False(mmuLock.IsHeldByCurrentThread);
    }

    [Fact]
    public void Walk_HandlersReturnNoHolders_DoesNotFlush()
    {
        var (walker, mmuLock, flush) = Make();
        var log = new List<string>();
        var h = new Recorder(log, 0, mmuLock);
        var r = walker.Walk(new HvaRangeWalk(B, B.Add(Page.Size), FlushOnReturn: true), ref h);
        Assert.Equal(WalkOutcome.Done, r.Outcome);
        Assert.Equal(["onlock 100-100", "slot1 100-100"], log);
        Assert.Empty(flush.Calls);
    }

    [Fact]
    public void Walk_WithoutFlushOnReturn_ReturnsHoldersAndDoesNotFlush()
    {
        var (walker, mmuLock, flush) = Make();
        var h = new Recorder([], 0b10, mmuLock);
        var r = walker.Walk(new HvaRangeWalk(A, A.Add(Page.Size)), ref h);
        Assert.Equal(new WalkResult(WalkOutcome.Done, 0b10), r);
        Assert.Empty(flush.Calls);
    }

    [Fact]
    public void Walk_MayNotBlockAndTheLockIsTaken_WouldBlockAndCallsNothing()
    {
        var (walker, mmuLock, flush) = Make();
        var log = new List<string>();
        using var held = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var holder = new Thread(() => { lock (mmuLock) { held.Set(); release.Wait(); } });
        holder.Start();
        held.Wait();
        var h = new Recorder(log, 1, null);
        var r = walker.Walk(new HvaRangeWalk(A, A.Add(Page.Size), MayBlock: false, FlushOnReturn: true), ref h);
        release.Set();
        holder.Join();
        Assert.Equal(WalkOutcome.WouldBlock, r.Outcome);
        Assert.Empty(log);
        Assert.Empty(flush.Calls);
    }

    [Fact]
    public void Walk_Lockless_TakesNoLockAndNeverFlushes()
    {
        var (walker, mmuLock, flush) = Make();
        var log = new List<string>();
        using var held = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var holder = new Thread(() => { lock (mmuLock) { held.Set(); release.Wait(); } });
        holder.Start();
        held.Wait();
        var h = new Recorder(log, 1, null);
        var r = walker.Walk(new HvaRangeWalk(A, A.Add(Page.Size), FlushOnReturn: true, Lockless: true), ref h);
        release.Set();
        holder.Join();
        Assert.Equal(WalkOutcome.Done, r.Outcome);
        Assert.Equal(["onlock 0-0", "slot0 0-0"], log);
        Assert.Empty(flush.Calls);
    }

    [Fact]
    public void WalkLocked_CallerHoldsTheLock_RunsTheSameWalk()
    {
        var (walker, mmuLock, flush) = Make();
        var log = new List<string>();
        var h = new Recorder(log, 1, mmuLock);
        lock (mmuLock)
        {
            var r = walker.WalkLocked(new HvaRangeWalk(B, B.Add(8 * Page.Size), FlushOnReturn: true), ref h);
            Assert.Equal(WalkOutcome.Done, r.Outcome);
        }
        Assert.Equal(["onlock 100-107", "slot1 100-107"], log);
        Assert.Equal([(1UL, 0x100UL, 0x107UL)], flush.Calls);
        Assert.Empty(flush.Listed);   // a range walk lists no frames
    }

    [Fact]
    public void Walk_BatchOverTwoSlots_OnLockListsTheFramesHandlerPerRunOneFlushListingThem()
    {
        var (walker, mmuLock, flush) = Make(adjacent: true);
        var log = new List<string>();
        var h = new Recorder(log, 2, mmuLock);
        ulong a = A.PageNumber;
        // Pages 1, 2, 3 and 9 of slot 0, page 2 of slot 1 (host page 16 + 2).
        ulong[] pages = [a + 1, a + 2, a + 3, a + 9, a + 18];
        var r = walker.Walk(new HvaRangeWalk(A.Add(Page.Size), A.Add(19 * Page.Size), FlushOnReturn: true, Pages: pages), ref h);
        Assert.Equal(WalkOutcome.Done, r.Outcome);
        Assert.Equal(["onlock 1-102 [1 2 3 9 102]", "slot0 1-3", "slot0 9-9", "slot1 102-102"], log);
        Assert.Equal([(2UL, 1UL, 0x102UL)], flush.Calls);
        // The flush gets the listed frames, so each vCPU's filter is asked about them, not the span.
        Assert.Equal([[1UL, 2, 3, 9, 0x102]], flush.Listed);
    }

    [Fact]
    public void Walk_BatchMeetingNoSlot_CallsNothing()
    {
        var (walker, mmuLock, flush) = Make();
        var log = new List<string>();
        var h = new Recorder(log, 1, mmuLock);
        ulong a = A.PageNumber;
        var r = walker.Walk(new HvaRangeWalk(A.Add(16 * Page.Size), A.Add(41 * Page.Size), FlushOnReturn: true, Pages: [a + 16, a + 40]), ref h);
        Assert.Equal(WalkOutcome.NoSlot, r.Outcome);
        Assert.Empty(log);
        Assert.Empty(flush.Calls);
    }
}
