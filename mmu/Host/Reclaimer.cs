using System.Diagnostics;

namespace ToyVmm.Mmu.Host;

// Lock use: LRU lock only to isolate and put back; page locks are try-locked
// (never waited for); an address-space lock is taken per page through the
// rmap, with the page locked (page lock -> address-space lock). Swap I/O runs
// with only page locks held.

/// <summary>
/// Reclaim: second-chance aging over the active/inactive lists (host accessed
/// bit, <see cref="FrameFlags.Referenced"/>, and every secondary MMU's accessed
/// bits through the notifiers), unmapping through the rmap and the one
/// invalidation path, batched swap writes, and freeing. Used by direct reclaim
/// in the allocator, by the background reclaimer and by PageOut.
/// </summary>
internal sealed class Reclaimer
{
    /// <summary>What one batch did.</summary>
    internal struct Outcome
    {
        public int Written, Dropped, Failed, Kept, Freed;
    }

    private readonly HostMemory _host;
    private readonly FramePool _frames;
    [ThreadStatic] private static List<uint>? t_isolated;
    [ThreadStatic] private static List<uint>? t_batch;
    [ThreadStatic] private static List<(ulong Owner, uint Frame)>? t_mapped;
    [ThreadStatic] private static List<ReadOnlyMemory<byte>>? t_scratch;
    [ThreadStatic] private static List<(uint Slot, uint Frame, int Index)>? t_writes;
    [ThreadStatic] private static byte[]? t_writeState;
    [ThreadStatic] private static List<uint>? t_toFree;
    [ThreadStatic] private static List<uint>? t_scratchFrames;

    public Reclaimer(HostMemory host)
    {
        _host = host;
        _frames = host.Frames;
    }

    /// <summary>
    /// Reclaim until <paramref name="target"/> frames are freed or a few rounds
    /// free nothing. Priority 0 honours accessed bits; 2 ignores them (last resort).
    /// </summary>
    public int DirectReclaim(int target, int priority, bool countAsDirect = true)
    {
        HostLockDebug.AssertNoAddressSpaceLockHeld();
        if (countAsDirect) _host.Stats.Count(ref _host.Stats.DirectReclaims);
        int freed = 0, idle = 0, rounds = 0;
        while (freed < target && idle < 3 && rounds < 64 + target / Math.Max(1, _host.Options.ReclaimBatch) * 4)
        {
            int got = ShrinkOnce(priority, mayBlock: true);
            freed += got;
            rounds++;
            if (got == 0) { idle++; if (priority < 2) priority++; }
        }
        return freed;
    }

    /// <summary>
    /// What one pass did: frames freed, pages taken off the inactive list, and how many of
    /// those came back because they are dirty and swap has no slot for them (full or disabled).
    /// </summary>
    internal readonly record struct Pass(int Freed, int Taken, int Unswappable)
    {
        /// <summary>
        /// Pages were taken and every one came back for want of swap: trying again frees
        /// nothing until swap gets a free slot or pages are freed or cleaned. Anything else
        /// that frees nothing (a page lock held, a reference held, a refused non-blocking
        /// start, an empty list while another reclaimer holds pages isolated) may pass.
        /// </summary>
        public bool OnlyUnswappable => Taken > 0 && Unswappable == Taken;
    }

    /// <summary>One pass: age the active list if the inactive one is short, then reclaim a batch from the inactive tail.</summary>
    public int ShrinkOnce(int priority, bool mayBlock) => ShrinkPass(priority, mayBlock).Freed;

    /// <summary><see cref="ShrinkOnce"/>, saying why nothing was freed when nothing was (the background reclaimer's retry decision).</summary>
    public Pass ShrinkPass(int priority, bool mayBlock)
    {
        int batchSize = _host.Options.ReclaimBatch;
        var lru = _host.Lru;
        var events = _host.Events;
        long started = events is null ? 0 : Stopwatch.GetTimestamp();
        if (lru.InactiveCount < lru.ActiveCount || lru.InactiveCount < batchSize)
            AgeActive(batchSize * 2, ignoreYoung: priority >= 2);

        var isolated = t_isolated ??= new List<uint>(batchSize);
        var batch = t_batch ??= new List<uint>(batchSize);
        isolated.Clear();
        batch.Clear();
        lru.Isolate(fromActive: false, batchSize, isolated, out int scanned);
        _host.Stats.Count(ref _host.Stats.ReclaimScanned, scanned);

        var mapped = t_mapped ??= new List<(ulong Owner, uint Frame)>(batchSize);
        mapped.Clear();
        foreach (uint f in isolated)
        {
            if (!_frames.TryLockPage(f)) { PutBack(f, active: false); continue; }
            ulong owner = Volatile.Read(ref _frames.Meta(f).Owner);
            if (owner != 0) mapped.Add((owner, f));
            else if (priority == 0 && _frames.Has(f, FrameFlags.SwapCache) && _frames.TestAndClear(f, FrameFlags.Referenced) && !_host.Swap.IsOrphan(f))
            {
                _frames.UnlockPage(f);
                PutBack(f, active: true);
            }
            else batch.Add(f);
        }
        int unswappable = mapped.Count > 0 ? UnmapMapped(mapped, checkYoung: priority == 0, mayBlock, batch) : 0;
        if (batch.Count == 0)
        {
            if (isolated.Count > 0) _host.Stats.Count(ref _host.Stats.ReclaimScansFailed);
            return new Pass(0, isolated.Count, unswappable);
        }
        var outcome = FinishBatch(batch, isolated: true);
        if (outcome.Freed == 0) _host.Stats.Count(ref _host.Stats.ReclaimScansFailed);
        events?.PageOutBatch(outcome.Written + outcome.Dropped, started, Stopwatch.GetTimestamp());
        return new Pass(outcome.Freed, isolated.Count, unswappable);
    }

    /// <summary>
    /// Unmap the isolated, page-locked, mapped frames of a pass through their owners'
    /// rmap: grouped by address space and sorted by page (the owner value orders both),
    /// each group reclaimed with one lock hold and one invalidation per run of nearby
    /// pages (<see cref="HostAddressSpace.ReclaimBatch"/>). Unmapped frames join
    /// <paramref name="batch"/>; the rest are unlocked and put back. Returns how many came
    /// back because swap had no slot for them (<see cref="ReclaimUnmap.NoSwap"/>).
    /// </summary>
    private int UnmapMapped(List<(ulong Owner, uint Frame)> mapped, bool checkYoung, bool mayBlock, List<uint> batch)
    {
        mapped.Sort((a, b) => a.Owner.CompareTo(b.Owner));
        int n = mapped.Count;
        Span<uint> frames = n <= 256 ? stackalloc uint[n] : new uint[n];
        Span<ulong> vpns = n <= 256 ? stackalloc ulong[n] : new ulong[n];
        Span<ReclaimUnmap> results = n <= 256 ? stackalloc ReclaimUnmap[n] : new ReclaimUnmap[n];
        for (int i = 0; i < n; i++)
        {
            frames[i] = mapped[i].Frame;
            vpns[i] = FrameMeta.OwnerVpn(mapped[i].Owner);
        }
        int start = 0;
        while (start < n)
        {
            int space = FrameMeta.OwnerSpace(mapped[start].Owner);
            int end = start + 1;
            while (end < n && FrameMeta.OwnerSpace(mapped[end].Owner) == space) end++;
            var mm = _host.SpaceById(space);
            if (mm is null) results[start..end].Fill(ReclaimUnmap.Gone);
            else mm.ReclaimBatch(frames[start..end], vpns[start..end], checkYoung, mayBlock, results[start..end]);
            start = end;
        }
        int unswappable = 0;
        for (int i = 0; i < n; i++)
        {
            var r = results[i];
            if (r is ReclaimUnmap.Young or ReclaimUnmap.Busy or ReclaimUnmap.NoSwap or ReclaimUnmap.WouldBlock)
            {
                if (r == ReclaimUnmap.NoSwap) unswappable++;
                _frames.UnlockPage(frames[i]);
                PutBack(frames[i], active: r == ReclaimUnmap.Young);
            }
            else batch.Add(frames[i]);
        }
        mapped.Clear();
        return unswappable;
    }

    private void PutBack(uint f, bool active)
    {
        _host.Lru.Putback(f, active);
        _host.PutPage(f);
    }

    /// <summary>
    /// Second chance on the active list: used pages go back to its head, the
    /// rest to the inactive head. Returns the pages looked at.
    /// </summary>
    internal int AgeActive(int count, bool ignoreYoung)
    {
        var list = t_isolated ??= new List<uint>(count);
        list.Clear();
        _host.Lru.Isolate(fromActive: true, count, list, out int scanned);
        _host.Stats.Count(ref _host.Stats.ReclaimScanned, scanned);
        foreach (uint f in list)
        {
            bool young;
            ulong owner = Volatile.Read(ref _frames.Meta(f).Owner);
            var mm = owner != 0 ? _host.SpaceById(FrameMeta.OwnerSpace(owner)) : null;
            if (mm is not null) young = mm.TestAndClearYoung(f, FrameMeta.OwnerVpn(owner), out _);
            else young = _frames.TestAndClear(f, FrameFlags.Referenced);
            PutBack(f, active: young && !ignoreYoung);
        }
        list.Clear();
        return scanned;
    }

    /// <summary>
    /// Finish a batch of page-locked frames the caller holds a reference to,
    /// each either unmapped by reclaim or still mapped (skipped): write the
    /// dirty swap-cached ones in runs of consecutive slots, drop from the swap
    /// cache and free every unmapped frame whose swap copy is now current (or
    /// that nothing can reach), unlock, and put the rest back. When
    /// <paramref name="isolated"/>, the caller took the frames off the LRU;
    /// otherwise (PageOut) they stay listed and another reclaimer may have
    /// isolated them meanwhile, which is its business.
    /// </summary>
    public Outcome FinishBatch(List<uint> batch, bool isolated)
    {
        HostLockDebug.AssertNoSpinLocksHeld();
        var swap = _host.Swap;
        var outcome = new Outcome();
        var writes = t_writes ??= new List<(uint, uint, int)>();
        // What the writes did to each frame of the batch, by its index there (a batch lists a frame once).
        if (t_writeState is null || t_writeState.Length < batch.Count) t_writeState = new byte[Math.Max(batch.Count, 64)];
        var state = t_writeState.AsSpan(0, batch.Count);
        state.Clear();
        var toFree = t_toFree ??= new List<uint>();
        toFree.Clear();
        writes.Clear();
        for (int i = 0; i < batch.Count; i++)
        {
            uint f = batch[i];
            if (_frames.Meta(f).MapCount == 0 && _frames.Has(f, FrameFlags.SwapCache) && _frames.Has(f, FrameFlags.Dirty) && !swap.IsOrphan(f))
                writes.Add((_frames.Meta(f).SwapSlot, f, i));
        }
        if (writes.Count > 0) WriteRuns(writes, state, ref outcome);

        for (int i = 0; i < batch.Count; i++)
        {
            uint f = batch[i];
            bool failed = state[i] == WriteFailed;
            Debug.Assert(_frames.IsPageLocked(f), "the batch is page-locked");
            bool free = false, wasWritten = false;
            if (_frames.Meta(f).MapCount == 0)
            {
                if (_frames.Has(f, FrameFlags.SwapCache))
                {
                    wasWritten = state[i] == WriteDone;
                    free = swap.TryDropReclaimed(f, expectedRefs: 2);
                }
                else free = _frames.RefCountOf(f) == 1;
            }
            _frames.UnlockPage(f);
            if (free)
            {
                toFree.Add(f);   // freed together below
                outcome.Freed++;
                if (!wasWritten)
                {
                    outcome.Dropped++;
                    _host.Stats.Count(ref _host.Stats.CleanPagesDropped);
                }
            }
            else if (!failed && !wasWritten) outcome.Kept++;
            if (free) continue;
            if (isolated)
                _host.Lru.Putback(f, active: failed || _frames.Has(f, FrameFlags.Referenced));
            _host.PutPage(f);
        }
        var freeing = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(toFree);
        if (isolated) _host.Lru.EndIsolation(freeing);
        _host.PutPages(freeing, t_scratchFrames ??= new List<uint>());
        toFree.Clear();
        _host.Stats.Count(ref _host.Stats.ReclaimFreed, outcome.Freed);
        batch.Clear();
        return outcome;
    }

    private const byte WriteDone = 1, WriteFailed = 2;

    /// <summary>Write the batch's dirty swap-cached frames in runs of consecutive slots; marks each frame's <paramref name="state"/> (by batch index) done or failed.</summary>
    private void WriteRuns(List<(uint Slot, uint Frame, int Index)> writes, Span<byte> state, ref Outcome outcome)
    {
        // Slots are handed out lowest free first, in the batch's order, so a batch of fresh
        // slots arrives sorted: check before sorting (the sort with a comparison was about 2% of page-out CPU).
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(writes);
        for (int k = 1; k < span.Length; k++)
            if (span[k].Slot < span[k - 1].Slot) { span.Sort(static (a, b) => a.Slot.CompareTo(b.Slot)); break; }
        var scratch = t_scratch ??= new List<ReadOnlyMemory<byte>>();
        Span<uint> run = stackalloc uint[64];
        int i = 0;
        while (i < span.Length)
        {
            uint first = span[i].Slot;
            int n = 0;
            while (i + n < span.Length && n < run.Length && span[i + n].Slot == first + (uint)n)
            {
                run[n] = span[i + n].Frame;
                n++;
            }
            var frames = run[..n];
            // Clear before writing: the frames are unmapped and locked, so nobody can dirty them during the write.
            foreach (uint f in frames) _frames.Clear(f, FrameFlags.Dirty);
            var events = _host.Events;
            long started = events is null ? 0 : Stopwatch.GetTimestamp();
            try
            {
                _host.Swap.WriteRun(first, frames, scratch);
                events?.SwapWritten(first, n, started, Stopwatch.GetTimestamp());
                for (int k = 0; k < n; k++) state[span[i + k].Index] = WriteDone;
                outcome.Written += n;
                _host.Stats.Count(ref _host.Stats.PagesWrittenToSwap, n);
            }
            catch (SwapIoException e)
            {
                // Nothing is lost: the frames stay in the swap cache, dirty, and are found there by faults.
                for (int k = 0; k < n; k++) { _frames.Set(frames[k], FrameFlags.Dirty); state[span[i + k].Index] = WriteFailed; }
                outcome.Failed += n;
                if (e.OutOfSpace) _host.Stats.Count(ref _host.Stats.SwapOutOfSpace);
                _host.Stats.Error(ref _host.Stats.SwapWriteErrors, e.Message);
            }
            i += n;
        }
    }
}
