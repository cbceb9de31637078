using System.Diagnostics;

namespace ToyVmm.Mmu.Secondary;

// The one notifier range walker of every secondary MMU, modelled on KVM's
// __kvm_handle_hva_range (virt/kvm/kvm_main.c): a host-virtual range from an
// MMU notifier becomes, slot by slot, a guest frame range handed to a handler.
//
//   Walk(range, handler)
//     no slot meets the range (lock-free look)      -> NoSlot, nothing taken
//     take the MMU lock (try only if !MayBlock)     -> WouldBlock if refused
//     slots = the slot set now (stable: slot changes take the MMU lock)
//     handler.OnLock(first, last)                   -- once, all slots' span
//     for each slot meeting the range:
//         holders |= handler.Handle(slot, firstGfn, lastGfn)
//     if FlushOnReturn and holders != 0:
//         flush.FlushRemoteTlbsLocked(holders, first, last)
//     drop the lock
//
// KVM takes the lock lazily at the first slot found; the lock-free look before
// taking it does the same job here. A Lockless walk (test_young) takes no lock
// and never flushes.
//
// A batch walk (Pages: scattered host pages, one notifier start/end for all):
//     take the MMU lock as above
//     gfns = the listed pages' guest frames, slot by slot, sorted
//     handler.OnLockBatch(first, last, gfns)        -- once (default: OnLock(first, last))
//     for each slot, each run of listed pages consecutive in it:
//         holders |= handler.Handle(slot, runFirstGfn, runLastGfn)
//     flush once on return, over [first, last] listing gfns, as above
// so a batch of n pages is one lock hold, n zaps and one shootdown.

/// <summary>What a notifier walk does to the guest frames of each slot it meets (KVM's handler and on_lock).</summary>
/// <remarks>
/// Implemented by structs and called through a constrained generic, so a walk allocates
/// nothing (a batch walk: nothing below 512 pages, and a handler used for batches
/// overrides <see cref="OnLockBatch"/>, since the default method would box it).
/// </remarks>
public interface IGfnRangeHandler
{
    /// <summary>
    /// Once, before the first <see cref="Handle"/>, under the MMU lock (unless the
    /// walk is lockless), with the span of guest frames of every slot the range meets.
    /// </summary>
    void OnLock(ulong firstGfn, ulong lastGfn);

    /// <summary>
    /// <see cref="OnLock"/> of a batch walk: also the guest frames the batch lists (sorted,
    /// in [<paramref name="firstGfn"/>, <paramref name="lastGfn"/>]). A handler that keeps no
    /// per-frame state may take the span for the batch (the default): it only ever does more.
    /// </summary>
    void OnLockBatch(ulong firstGfn, ulong lastGfn, ReadOnlySpan<ulong> gfns) => OnLock(firstGfn, lastGfn);

    /// <summary>
    /// Act on guest frames [<paramref name="firstGfn"/>, <paramref name="lastGfn"/>] of
    /// <paramref name="slot"/>. Returns the TLB holders that must flush
    /// (the MMU's own holder mask; 0 when nothing a vCPU may cache changed).
    /// </summary>
    ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn);
}

/// <summary>The flush a walk ends with when <see cref="HvaRangeWalk.FlushOnReturn"/> asks for it (KVM's kvm_flush_remote_tlbs).</summary>
public interface IRemoteTlbFlush
{
    /// <summary>Return once no vCPU in <paramref name="holders"/> can use a translation of the range. Called with the MMU lock held.</summary>
    void FlushRemoteTlbsLocked(ulong holders, ulong firstGfn, ulong lastGfn);

    /// <summary>
    /// The flush of a batch: as above, for the listed guest frames <paramref name="gfns"/> (sorted,
    /// in [<paramref name="firstGfn"/>, <paramref name="lastGfn"/>]), so that a vCPU's filter can be
    /// asked about each listed frame rather than the whole span (default: the span).
    /// </summary>
    void FlushRemoteTlbsLocked(ulong holders, ulong firstGfn, ulong lastGfn, ReadOnlySpan<ulong> gfns) =>
        FlushRemoteTlbsLocked(holders, firstGfn, lastGfn);
}

/// <summary>A notifier walk over host-virtual [Start, End).</summary>
/// <param name="MayBlock">False: only try the MMU lock, and report <see cref="WalkOutcome.WouldBlock"/> if it is taken.</param>
/// <param name="FlushOnReturn">Flush the holders the handlers returned before the lock is dropped.</param>
/// <param name="Lockless">Take no lock (a racy read such as test_young); never flushes.</param>
/// <param name="Pages">A batch: the host page numbers to act on (sorted, distinct, in [Start, End)); null: the whole range.</param>
public readonly record struct HvaRangeWalk(Hva Start, Hva End, bool MayBlock = true, bool FlushOnReturn = false, bool Lockless = false, ulong[]? Pages = null);

public enum WalkOutcome
{
    /// <summary>No memory slot meets the range: nothing was called.</summary>
    NoSlot,
    /// <summary>A non-blocking walk found the MMU lock taken: nothing was called.</summary>
    WouldBlock,
    /// <summary>OnLock and the handlers ran (and the flush, if asked for and needed).</summary>
    Done,
}

/// <summary>What a walk did: its outcome and the TLB holders its handlers returned.</summary>
public readonly record struct WalkResult(WalkOutcome Outcome, ulong Holders);

/// <summary>
/// The slot walker of one secondary MMU: its MMU lock, its slots and its TLB
/// flush. Every notifier callback of every secondary MMU walks through here.
/// </summary>
public sealed class SlotRangeWalker(Lock mmuLock, SlotTable slots, IRemoteTlbFlush flush)
{
    public WalkResult Walk<T>(in HvaRangeWalk walk, ref T handler) where T : struct, IGfnRangeHandler
    {
        if (!Meets(slots.Current, walk.Start, walk.End)) return new(WalkOutcome.NoSlot, 0);
        if (walk.Lockless) return Run(walk, ref handler, locked: false);
        if (walk.MayBlock) mmuLock.Enter();
        else if (!mmuLock.TryEnter()) return new(WalkOutcome.WouldBlock, 0);
        try { return Run(walk, ref handler, locked: true); }
        finally { mmuLock.Exit(); }
    }

    /// <summary>The walk for a caller that already holds the MMU lock (a slot removal).</summary>
    public WalkResult WalkLocked<T>(in HvaRangeWalk walk, ref T handler) where T : struct, IGfnRangeHandler
    {
        Debug.Assert(mmuLock.IsHeldByCurrentThread, "WalkLocked needs the MMU lock");
        return Run(walk, ref handler, locked: true);
    }

    private WalkResult Run<T>(in HvaRangeWalk walk, ref T handler, bool locked) where T : struct, IGfnRangeHandler
    {
        if (walk.Pages is { } pages) return RunBatch(walk, pages, ref handler, locked);
        var current = slots.Current;
        ulong first = ulong.MaxValue, last = 0;
        foreach (var slot in current)
        {
            if (!slot.GfnsOf(walk.Start, walk.End, out ulong f, out ulong l)) continue;
            first = Math.Min(first, f); last = Math.Max(last, l);
        }
        if (first > last) return new(WalkOutcome.NoSlot, 0);
        handler.OnLock(first, last);
        ulong holders = 0;
        foreach (var slot in current)
            if (slot.GfnsOf(walk.Start, walk.End, out ulong f, out ulong l))
                holders |= handler.Handle(slot, f, l);
        if (locked && walk.FlushOnReturn && holders != 0) flush.FlushRemoteTlbsLocked(holders, first, last);
        return new(WalkOutcome.Done, holders);
    }

    /// <summary>The batch walk: the listed pages' guest frames, each slot's runs of consecutive listed pages to the handler, one flush.</summary>
    private WalkResult RunBatch<T>(in HvaRangeWalk walk, ulong[] pages, ref T handler, bool locked) where T : struct, IGfnRangeHandler
    {
        var current = slots.Current;
        int n = 0;
        foreach (var slot in current) n += ListedIn(slot, pages, out _);
        if (n == 0) return new(WalkOutcome.NoSlot, 0);
        Span<ulong> gfns = n <= 512 ? stackalloc ulong[n] : new ulong[n];
        int k = 0;
        foreach (var slot in current)
        {
            int count = ListedIn(slot, pages, out int from);
            ulong delta = slot.GpaStart.PageNumber - slot.HvaStart.PageNumber;   // wraps: gfn = vpn + delta
            for (int i = from; i < from + count; i++) gfns[k++] = pages[i] + delta;
        }
        gfns.Sort();   // slots keep order within, not across
        handler.OnLockBatch(gfns[0], gfns[^1], gfns);
        ulong holders = 0;
        foreach (var slot in current)
        {
            int count = ListedIn(slot, pages, out int from);
            ulong delta = slot.GpaStart.PageNumber - slot.HvaStart.PageNumber;
            for (int i = from; i < from + count;)
            {
                int j = i + 1;
                while (j < from + count && pages[j] == pages[j - 1] + 1) j++;
                holders |= handler.Handle(slot, pages[i] + delta, pages[j - 1] + delta);
                i = j;
            }
        }
        if (locked && walk.FlushOnReturn && holders != 0) flush.FlushRemoteTlbsLocked(holders, gfns[0], gfns[^1], gfns);
        return new(WalkOutcome.Done, holders);
    }

    /// <summary>How many of the sorted <paramref name="pages"/> lie in the slot; the first at <paramref name="from"/>.</summary>
    private static int ListedIn(MemorySlot slot, ulong[] pages, out int from)
    {
        from = LowerBound(pages, slot.HvaStart.PageNumber);
        return LowerBound(pages, slot.HvaEnd.PageNumber) - from;
    }

    private static int LowerBound(ulong[] sorted, ulong value)
    {
        int i = Array.BinarySearch(sorted, value);
        return i >= 0 ? i : ~i;
    }

    private static bool Meets(ReadOnlySpan<MemorySlot> current, Hva start, Hva end)
    {
        foreach (var slot in current)
            if (start.Value < slot.HvaEnd.Value && slot.HvaStart.Value < end.Value) return true;
        return false;
    }
}
