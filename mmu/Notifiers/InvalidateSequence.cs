using System.Diagnostics;

namespace ToyVmm.Mmu.Notifiers;

/// <summary>
/// KVM's fault/invalidate sequence state for one VM (<c>mmu_invalidate_seq</c>,
/// <c>mmu_invalidate_in_progress</c> and the ranges in progress). Every member
/// but <see cref="Sequence"/> and <see cref="FaultLikelyToRetry"/> must be used
/// under the owner's MMU lock.
/// </summary>
/// <remarks>
/// State table (S = Sequence, N = InProgress, R = the guest frame ranges in progress):
/// <code>
///   event                         S      N      R                 a fault that read S0 ...
///   (idle)                        s      0      {}                installs if S == S0
///   invalidate start over r       s      n+1    R + {r}           retries if its gfn is in R
///   invalidate end of r           s+1    n-1    R - {r}           retries: S != S0
///   last end (N becomes 0)        s+1    0      {}                retries once, then installs
/// </code>
/// A fault reads S before get_user_pages (lock-free, acquire), then under the
/// MMU lock calls <see cref="FaultMustRetryLocked"/>. Because end increments S
/// under the lock after the host has changed its PTEs, a page that get_user_pages
/// returned before or during the invalidation is never installed.
/// <para>
/// KVM merges the ranges in progress into one (start = min, end = max) until N
/// drops to 0. Under ToyVmm's reclaimer, forced page-outs and hypercalls running
/// together, N rarely reached 0 and the merged range grew over all of RAM, so
/// every fault waited (a guest stalled for seconds). The ranges are kept apart
/// instead: a fault waits only for an invalidation that covers its own page.
/// </para>
/// <para>
/// A batch (a list of scattered pages, one start and one end) is one entry of R that
/// holds its sorted guest frames: a fault on a listed frame waits and retries, a fault
/// on a frame between them does not wait (its re-check still sees S move at the end,
/// as every fault in flight does, and retries once).
/// </para>
/// </remarks>
public sealed class InvalidateSequence
{
    private readonly Lock _mmuLock;
    private long _sequence;                                   // written under _mmuLock, read lock-free by faults
    // The ranges in progress: the first _count entries of _ranges, changed in place under
    // _mmuLock and read lock-free (racily) by the pre-check; the array is replaced only when
    // it must grow, so an invalidation allocates nothing (an allocation that has to refill its
    // thread's allocation context was seen to stall a one-page invalidation for 10-30 us).
    private InProgress[] _ranges = new InProgress[4];
    private int _count;

    /// <summary>One invalidation in progress: [First, Last], and for a batch the frames it lists (sorted).</summary>
    private readonly record struct InProgress(ulong First, ulong Last, ulong[]? Gfns)
    {
        public bool Covers(ulong gfn) => gfn >= First && gfn <= Last && (Gfns is null || Array.BinarySearch(Gfns, gfn) >= 0);

        public bool SameAs(ulong first, ulong last, ReadOnlySpan<ulong> gfns) =>
            First == first && Last == last && (Gfns is null ? gfns.IsEmpty : gfns.SequenceEqual(Gfns));
    }

    public InvalidateSequence(Lock mmuLock) => _mmuLock = mmuLock;

    /// <summary>Read before get_user_pages; pairs with the release in <see cref="EndLocked"/>.</summary>
    public long Sequence => Volatile.Read(ref _sequence);

    public int InProgressLocked { get { AssertLocked(); return _count; } }

    /// <summary>Invalidate range start: add [firstGfn, lastGfn] to the ranges in progress.</summary>
    public void BeginLocked(ulong firstGfn, ulong lastGfn) => BeginLocked(firstGfn, lastGfn, default);

    /// <summary>
    /// Invalidate start of a batch: add the guest frames <paramref name="gfns"/> (sorted,
    /// within [firstGfn, lastGfn]; empty: every frame of the range) to those in progress.
    /// </summary>
    public void BeginLocked(ulong firstGfn, ulong lastGfn, ReadOnlySpan<ulong> gfns)
    {
        AssertLocked();
        Debug.Assert(gfns.IsEmpty || (gfns[0] >= firstGfn && gfns[^1] <= lastGfn), "the batch lies in its range");
        if (_count == _ranges.Length)
        {
            var grown = new InProgress[_ranges.Length * 2];
            Array.Copy(_ranges, grown, _count);
            Volatile.Write(ref _ranges, grown);
        }
        _ranges[_count] = new InProgress(firstGfn, lastGfn, gfns.IsEmpty ? null : gfns.ToArray());
        Volatile.Write(ref _count, _count + 1);   // release: a pre-check that counts it reads it whole
    }

    /// <summary>Invalidate range end of [firstGfn, lastGfn]: move the sequence on and drop that range.</summary>
    public void EndLocked(ulong firstGfn, ulong lastGfn) => EndLocked(firstGfn, lastGfn, default);

    /// <summary>Invalidate end of the batch begun with the same frames: move the sequence on and drop it.</summary>
    public void EndLocked(ulong firstGfn, ulong lastGfn, ReadOnlySpan<ulong> gfns)
    {
        AssertLocked();
        var ranges = _ranges;
        int i = -1;
        for (int j = 0; j < _count && i < 0; j++)
            if (ranges[j].SameAs(firstGfn, lastGfn, gfns)) i = j;
        Debug.Assert(i >= 0, "every end is paired with a start of the same range");
        // Release: a fault that sees the new sequence also sees the host's new PTEs.
        Volatile.Write(ref _sequence, _sequence + 1);
        if (i < 0) return;
        // The last entry moves into the hole. A pre-check racing with the move may miss a range
        // or see one twice: it is a hint, and the locked re-check above decides.
        int last = _count - 1;
        ranges[i] = ranges[last];
        ranges[last] = default;
        Volatile.Write(ref _count, last);
    }

    /// <summary>
    /// The locked re-check of a fault that read <paramref name="sequenceAtStart"/>
    /// before get_user_pages: true when it must drop its page and retry.
    /// </summary>
    public bool FaultMustRetryLocked(ulong gfn, long sequenceAtStart)
    {
        AssertLocked();
        return Covers(_ranges, _count, gfn) || _sequence != sequenceAtStart;
    }

    /// <summary>Lock-free pre-check before get_user_pages (may be stale, or torn by a change in place; the locked re-check decides).</summary>
    public bool FaultLikelyToRetry(ulong gfn)
    {
        int count = Volatile.Read(ref _count);
        var ranges = Volatile.Read(ref _ranges);
        return Covers(ranges, Math.Min(count, ranges.Length), gfn);
    }

    private static bool Covers(InProgress[] ranges, int count, ulong gfn)
    {
        for (int i = 0; i < count; i++)
        {
            // A copy first: the lock-free pre-check may race with an end moving entries, and
            // Covers on the array element itself would read its batch list twice (null the second time).
            var r = ranges[i];
            if (r.Covers(gfn)) return true;
        }
        return false;
    }

    [Conditional("DEBUG")]
    private void AssertLocked() => Debug.Assert(_mmuLock.IsHeldByCurrentThread, "the MMU lock is held");
}
