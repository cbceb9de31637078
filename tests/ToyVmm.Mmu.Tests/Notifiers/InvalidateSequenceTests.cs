using Xunit;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Tests.Notifiers;

public class InvalidateSequenceTests
{
    private readonly Lock _lock = new();

    [Fact]
    public void FaultMustRetry_NoInvalidation_Installs()
    {
        var s = new InvalidateSequence(_lock);
        long seq = s.Sequence;
        lock (_lock) Assert.False(s.FaultMustRetryLocked(10, seq));
    }

    [Fact]
    public void FaultMustRetry_InvalidationInProgressOverPage_Retries()
    {
        var s = new InvalidateSequence(_lock);
        long seq = s.Sequence;
        lock (_lock)
        {
            s.BeginLocked(5, 20);
            Assert.True(s.FaultMustRetryLocked(10, seq));
            Assert.False(s.FaultMustRetryLocked(21, seq));   // outside the range, sequence unchanged
        }
    }

    [Fact]
    public void FaultMustRetry_InvalidationEndedSinceFaultStarted_Retries()
    {
        var s = new InvalidateSequence(_lock);
        long seq = s.Sequence;
        lock (_lock) { s.BeginLocked(100, 100); s.EndLocked(100, 100); }
        lock (_lock) Assert.True(s.FaultMustRetryLocked(5, seq));
        long again = s.Sequence;
        lock (_lock) Assert.False(s.FaultMustRetryLocked(5, again));
    }

    [Fact]
    public void ConcurrentInvalidations_EachRangeHoldsOnlyItsOwnPagesUntilItsEnd()
    {
        var s = new InvalidateSequence(_lock);
        lock (_lock)
        {
            s.BeginLocked(10, 20);
            s.BeginLocked(40, 50);
            long seq = s.Sequence;
            Assert.True(s.FaultMustRetryLocked(15, seq));
            Assert.True(s.FaultMustRetryLocked(45, seq));
            Assert.False(s.FaultMustRetryLocked(30, seq));     // between the two ranges: not held up
            Assert.False(s.FaultLikelyToRetry(30));
            s.EndLocked(10, 20);
            Assert.Equal(1, s.InProgressLocked);
            Assert.False(s.FaultMustRetryLocked(15, s.Sequence)); // its invalidation has ended
            Assert.True(s.FaultMustRetryLocked(45, s.Sequence));  // the other one has not
            Assert.True(s.FaultLikelyToRetry(45));
            s.EndLocked(40, 50);
            Assert.Equal(0, s.InProgressLocked);
            Assert.False(s.FaultMustRetryLocked(45, s.Sequence));
        }
    }

    [Fact]
    public void Batch_InProgress_ListedFramesRetryFramesBetweenDoNot()
    {
        var s = new InvalidateSequence(_lock);
        long seq = s.Sequence;
        lock (_lock)
        {
            s.BeginLocked(4, 90, [4, 17, 18, 90]);
            foreach (ulong gfn in new ulong[] { 4, 17, 18, 90 }) Assert.True(s.FaultMustRetryLocked(gfn, seq), $"listed {gfn}");
            foreach (ulong gfn in new ulong[] { 5, 16, 19, 89 }) Assert.False(s.FaultMustRetryLocked(gfn, seq), $"between {gfn}");
        }
        Assert.True(s.FaultLikelyToRetry(17));
        Assert.False(s.FaultLikelyToRetry(50));
    }

    [Fact]
    public void Batch_EndOfOneOfTwoOverlapping_KeepsTheOtherAndMovesTheSequence()
    {
        var s = new InvalidateSequence(_lock);
        long seq = s.Sequence;
        lock (_lock)
        {
            s.BeginLocked(10, 10);              // a one-page invalidation
            s.BeginLocked(2, 30, [2, 10, 30]);  // a batch listing the same page
            s.EndLocked(2, 30, [2, 10, 30]);
            Assert.Equal(1, s.InProgressLocked);
            Assert.True(s.FaultMustRetryLocked(10, s.Sequence), "the one-page invalidation still covers it");
            Assert.False(s.FaultMustRetryLocked(2, s.Sequence));
            Assert.True(s.FaultMustRetryLocked(2, seq), "a fault from before the batch's end retries once");
            s.EndLocked(10, 10);
            Assert.Equal(0, s.InProgressLocked);
            Assert.False(s.FaultMustRetryLocked(10, s.Sequence));
        }
    }

    [Fact]
    public void ManyInProgress_EndedInAnyOrder_EachCoversItsPagesUntilItsOwnEnd()
    {
        var s = new InvalidateSequence(_lock);
        ulong[] firsts = [100, 10, 70, 40, 130, 160, 190, 220, 250];   // more than the first array holds
        lock (_lock)
        {
            foreach (ulong f in firsts) s.BeginLocked(f, f + 9);
            Assert.Equal(firsts.Length, s.InProgressLocked);
            int left = firsts.Length;
            foreach (int k in new[] { 4, 0, 8, 2, 6, 1, 7, 3, 5 })
            {
                s.EndLocked(firsts[k], firsts[k] + 9);
                Assert.Equal(--left, s.InProgressLocked);
                for (int j = 0; j < firsts.Length; j++)
                {
                    bool ended = Array.IndexOf(new[] { 4, 0, 8, 2, 6, 1, 7, 3, 5 }, j) <= Array.IndexOf(new[] { 4, 0, 8, 2, 6, 1, 7, 3, 5 }, k);
                    Assert.Equal(!ended, s.FaultMustRetryLocked(firsts[j] + 5, s.Sequence));
                    Assert.Equal(!ended, s.FaultLikelyToRetry(firsts[j] + 5));
                }
            }
        }
    }

    /// <summary>
    /// The fault's lock-free pre-check reads the ranges while ends move entries in place under the
    /// lock: whatever it reads (a range, a batch, one torn between two), it answers and never throws.
    /// Bounded: 200,000 starts and ends of one-page invalidations and batches beside the reader.
    /// </summary>
    [Fact]
    public void FaultLikelyToRetry_WhileBatchesAndRangesBeginAndEnd_AnswersAndNeverThrows()
    {
        var s = new InvalidateSequence(_lock);
        ulong[] batch = [3, 5, 7];
        Exception? failed = null;
        int done = 0;
        var reader = new Thread(() =>
        {
            try
            {
                while (Volatile.Read(ref done) == 0)
                    for (ulong g = 0; g < 8; g++) s.FaultLikelyToRetry(g);
            }
            catch (Exception e) { failed = e; }
        });
        reader.Start();
        for (int i = 0; i < 100_000 && failed is null; i++)
        {
            lock (_lock)
            {
                s.BeginLocked(1, 1);
                s.BeginLocked(3, 7, batch);
                s.BeginLocked(2, 2);
            }
            lock (_lock)
            {
                s.EndLocked(1, 1);     // the last entry (a one-page range) moves into the hole
                s.EndLocked(3, 7, batch);
                s.EndLocked(2, 2);
            }
        }
        Volatile.Write(ref done, 1);
        reader.Join();
        Assert.Null(failed);
        lock (_lock) Assert.Equal(0, s.InProgressLocked);
    }
}
