using System.Diagnostics;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Host;

// THE invalidation path. Every operation that clears or changes host PTEs
// (Unmap, DontNeed, Protect, PageOut, reclaim, teardown) runs as:
//
//   take _lock
//   InvalidateStartLocked(range, event, mayBlock[, batch])   -- subscribers zap their
//        mappings of the range, hand dirty bits over (SetPageDirty) and flush
//        vCPU TLBs; a non-blocking start may refuse ("would block"): then
//        nothing has changed, the operation drops _lock, backs off, retries
//   change the PTEs of the range; frames whose last mapping went are kept in
//        a list, NOT freed
//   InvalidateEndLocked(range, event)
//   drop _lock
//   free the listed frames (ReleaseZapped)
//
// A batch (reclaim, page-out) lists scattered pages of the range: one start and
// one end for all of them, and only the listed pages' PTEs change in between.
//
// So a frame is freed only after every secondary MMU has dropped it, and a
// secondary fault that raced with the change retries (its sequence moved).
// Subscribers' callbacks run under _lock: they may take their own MMU lock
// and wait for vCPUs, but must not call back into this address space (the
// lock-free frame calls SetPageDirty / MarkPageAccessed are fine).
//
// How start and end reach the subscribers is the registry's protocol
// (Notifiers.Protocol): the sequence protocol calls their start and end; the
// teaching protocol broken-2008 says nothing at start and calls
// invalidate_page per page at end, after the PTEs changed; pin and none (the
// hosts before notifiers) tell nobody of reclaim and page-out.

public sealed partial class HostAddressSpace
{
    /// <summary>Invalidation starts seen by tests and diagnostics: (range, event) of the most recent one.</summary>
    internal InvalidateRange LastInvalidation { get; private set; }

    // The invalidation in progress: start and end run under one hold of _lock, so
    // one pair of fields carries the start's cause and time to the end's range.
    private InvalidateCause _invalidationCause;   // guarded by _lock
    private long _invalidationStarted;            // guarded by _lock

    /// <summary>
    /// Start an invalidation of pages [startVpn, endVpn) on behalf of <paramref name="cause"/>;
    /// of a batch, only the pages <paramref name="batch"/> lists (sorted, distinct, the first
    /// startVpn and the last endVpn - 1; the end is called with the same list).
    /// False: a subscriber would block; change nothing and retry.
    /// </summary>
    private bool InvalidateStartLocked(ulong startVpn, ulong endVpn, InvalidateEvent kind, InvalidateCause cause, bool mayBlock, ulong[]? batch = null)
    {
        AssertLocked();
        Debug.Assert(startVpn < endVpn, "the range is not empty");
        Debug.Assert(batch is null || (batch[0] == startVpn && batch[^1] == endVpn - 1), "the batch spans its range");
        var range = new InvalidateRange(Hva.FromPageNumber(startVpn), Hva.FromPageNumber(endVpn), kind, mayBlock)
        {
            Cause = cause,
            StartTicks = Stopwatch.GetTimestamp(),
            BatchPages = batch,
        };
        _invalidationCause = cause;
        _invalidationStarted = range.StartTicks;
        LastInvalidation = range;
        _host.Stats.Count(ref _host.Stats.Invalidations);
        if (kind == InvalidateEvent.Release)
        {
            Notifiers.Release();
            return true;
        }
        if (Notifiers.IsEmpty) return true;
        if (Notifiers.InvalidateRangeStart(range)) return true;
        _host.Stats.Count(ref _host.Stats.InvalidateRetries);
        return false;
    }

    private void InvalidateEndLocked(ulong startVpn, ulong endVpn, InvalidateEvent kind, bool mayBlock, ulong[]? batch = null)
    {
        AssertLocked();
        if (kind == InvalidateEvent.Release || Notifiers.IsEmpty) return;
        var range = new InvalidateRange(Hva.FromPageNumber(startVpn), Hva.FromPageNumber(endVpn), kind, mayBlock)
        {
            Cause = _invalidationCause,
            StartTicks = _invalidationStarted,
            BatchPages = batch,
        };
        Notifiers.InvalidateRangeEnd(range);
        // Under a protocol whose subscribers hear no range (broken-2008: pages, after the
        // fact; pin and none: nothing), no notifier start or end carries the cause to a
        // subscriber: the host records it.
        if (!Notifiers.Protocol.SubscribersHear(range))
            _host.Events?.InvalidateCompleted(_invalidationCause, startVpn, range.Pages, _invalidationStarted, Stopwatch.GetTimestamp());
    }

    /// <summary>
    /// Take _lock and start an invalidation, backing off while a non-blocking
    /// start is refused (after <see cref="HostMemoryOptions.NonBlockingTries"/>
    /// refusals it asks again with may-block true, if <paramref name="mayBlock"/> allows).
    /// Returns with _lock held and the invalidation started; false (lock not held) if it gave up.
    /// </summary>
    private bool EnterAndStart(ulong startVpn, ulong endVpn, InvalidateEvent kind, InvalidateCause cause, ref bool mayBlock, bool canFallBack)
    {
        for (int tries = 0; ; tries++)
        {
            EnterLock();
            if (InvalidateStartLocked(startVpn, endVpn, kind, cause, mayBlock)) return true;
            ExitLock();
            if (tries >= _host.Options.NonBlockingTries)
            {
                if (!canFallBack) return false;
                mayBlock = true;
            }
            Thread.Sleep(0);
        }
    }

    /// <summary>
    /// Clear every entry of [s, e): present pages lose their mapping (their
    /// references go to <paramref name="zapped"/>, freed by the caller after the
    /// invalidation ends); swap entries give up their slot. Returns pages cleared.
    /// </summary>
    private long ZapRangeLocked(ulong s, ulong e, List<uint> zapped)
    {
        AssertLocked();
        long n = 0;
        var swap = _host.Swap;
        for (ulong vpn = s; _pt.NextUsed(ref vpn, e); vpn++)
        {
            ref ulong entry = ref _pt.EntryOrNull(vpn);
            var pte = new Pte(entry);
            entry = 0;
            n++;
            if (pte.IsPresent)
            {
                uint f = pte.Frame;
                ref FrameMeta m = ref _frames.Meta(f);
                Debug.Assert(m.MapCount == 1 && m.Owner == FrameMeta.MakeOwner(Id, vpn), "the rmap names this page");
                m.MapCount = 0;
                m.Owner = 0;
                _resident--;
                zapped.Add(f);   // the mapping's reference, now the caller's
            }
            else if (pte.IsSwap)
            {
                uint cached = swap.LookupAndGet(pte.SwapSlot);
                swap.PteRefDecrement(pte.SwapSlot);
                if (cached != FrameMeta.NoFrame) zapped.Add(cached);   // a now-unreachable cached copy, with a reference
            }
        }
        return n;
    }

    /// <summary>After the invalidation has ended: drop the references a zap collected, freeing what is no longer used.</summary>
    private void ReleaseZapped(List<uint> zapped)
    {
        HostLockDebug.AssertNoSpinLocksHeld();
        foreach (uint f in zapped)
        {
            _host.FreeIfOrphan(f);
            _host.PutPage(f);
        }
        zapped.Clear();
    }
}
