using System.Diagnostics;

namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// KVM's fault/invalidate sequence state for one VM (<c>mmu_invalidate_seq</c>,
/// <c>mmu_invalidate_in_progress</c> and the merged range). Every member but
/// <see cref="Sequence"/> must be used under the owner's MMU lock.
/// </summary>
/// <remarks>
/// State table (S = Sequence, N = InProgress, [lo, hi] = merged guest frame range):
/// <code>
///   event                         S      N      range             a fault that read S0 ...
///   (idle)                        s      0      empty             installs if S == S0
///   invalidate start over r       s      n+1    [lo,hi] ∪ r       retries if its gfn in range
///   invalidate end                s+1    n-1    kept until N==0   retries: S != S0
///   last end (N becomes 0)        s+1    0      emptied           retries once, then installs
/// </code>
/// A fault reads S before get_user_pages (lock-free, acquire), then under the
/// MMU lock calls <see cref="FaultMustRetryLocked"/>. Because end increments S
/// under the lock after the host has changed its PTEs, a page that get_user_pages
/// returned before or during the invalidation is never installed.
/// </remarks>
public sealed class InvalidateSequence
{
    private readonly Lock _mmuLock;
    private long _sequence;                  // written under _mmuLock, read lock-free by faults
    private int _inProgress;                 // guarded by _mmuLock
    private ulong _rangeFirst = ulong.MaxValue, _rangeLast; // guarded by _mmuLock; gfn range, empty when first > last

    public InvalidateSequence(Lock mmuLock) => _mmuLock = mmuLock;

    /// <summary>Read before get_user_pages; pairs with the release in <see cref="EndLocked"/>.</summary>
    public long Sequence => Volatile.Read(ref _sequence);

    public int InProgressLocked { get { AssertLocked(); return _inProgress; } }

    /// <summary>Invalidate range start: count it and widen the merged range over [firstGfn, lastGfn].</summary>
    public void BeginLocked(ulong firstGfn, ulong lastGfn)
    {
        AssertLocked();
        _inProgress++;
        if (_rangeFirst > _rangeLast) { _rangeFirst = firstGfn; _rangeLast = lastGfn; }
        else { _rangeFirst = Math.Min(_rangeFirst, firstGfn); _rangeLast = Math.Max(_rangeLast, lastGfn); }
    }

    /// <summary>Invalidate range end: move the sequence on and drop the count; the range empties with the last one.</summary>
    public void EndLocked()
    {
        AssertLocked();
        Debug.Assert(_inProgress > 0, "every end is paired with a start");
        // Release: a fault that sees the new sequence also sees the host's new PTEs.
        Volatile.Write(ref _sequence, _sequence + 1);
        if (--_inProgress == 0) { _rangeFirst = ulong.MaxValue; _rangeLast = 0; }
    }

    /// <summary>
    /// The locked re-check of a fault that read <paramref name="sequenceAtStart"/>
    /// before get_user_pages: true when it must drop its page and retry.
    /// </summary>
    public bool FaultMustRetryLocked(ulong gfn, long sequenceAtStart)
    {
        AssertLocked();
        if (_inProgress > 0 && gfn >= _rangeFirst && gfn <= _rangeLast) return true;
        return _sequence != sequenceAtStart;
    }

    /// <summary>Lock-free pre-check before get_user_pages (may be stale; the locked re-check decides).</summary>
    public bool FaultLikelyToRetry(ulong gfn) =>
        Volatile.Read(ref _inProgress) > 0 && gfn >= Volatile.Read(ref _rangeFirst) && gfn <= Volatile.Read(ref _rangeLast);

    [Conditional("DEBUG")]
    private void AssertLocked() => Debug.Assert(_mmuLock.IsHeldByCurrentThread, "the MMU lock is held");
}
