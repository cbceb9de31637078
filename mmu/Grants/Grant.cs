using System.Buffers;
using System.Diagnostics;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Grants;

// Lock order (mmu/LOCKING.md "Grants"):
//   GrantTable._lock -> owner's address-space lock -> Grant._mutex -> an attacher's MMU lock
// A recall runs inside the owner's invalidate start (address-space lock held),
// takes _mutex, and zaps every attacher under its MMU lock. A fault through the
// grant holds _mutex only to read or fill the PFN table: it drops it around
// get_user_pages (which takes the owner's address-space lock) and is on
// _faulters whenever it does not hold it, until it installs or gives up.
//
// The XPMEM protocol (docs/DESIGN.md "Grants: the XPMEM protocol"):
//
//   attacher fault on grant page i            owner's host invalidates hva range r
//   -------------------------------------     -----------------------------------------
//   lock _mutex; add me to _faulters          InvalidateRangeStart(r) = recall:
//   pfn[i] empty: unlock                         lock _mutex
//     get_user_pages(owner hva) -> F (+ref)      mark the faulters in r for retry
//     lock; if marked: put F, retry              every attacher: zap r, shoot down TLBs
//     pfn[i] = F (the grant's reference)         drop the grant's reference of each page in r
//   unlock (still on _faulters)                  unlock
//   attacher MMU lock                          host clears its PTEs; frees frames after end
//   if marked: give back, retry
//   install; unlock; finished (off _faulters without the mutex: the MMU may give a
//   page back with its own lock held, which a recall takes under the mutex)
//
// On return from a recall there is no attacher entry of r, no fault of r that
// will install, and no grant reference to any page of r: the host may free them.

/// <summary>
/// An XPMEM-style grant: part of one VM's RAM (its owner) that other VMs attach
/// and map through their own secondary MMUs. It is a notifier subscriber of the
/// owner's host address space (the second kind beside a secondary MMU), and to
/// each attacher it is the host their MMU faults through (<see cref="GrantView"/>).
/// </summary>
/// <remarks>
/// The grant keeps a PFN table for its range, filled by get_user_pages, with one
/// host page reference per filled page for all attachers; attachers' entries
/// hold none. The owner's invalidate start recalls the range (above) before the
/// host touches a PTE; its invalidate end has nothing to do.
/// </remarks>
public sealed unsafe class Grant : IMmuNotifierSubscriber
{
    private readonly Lock _mutex = new();
    private readonly ulong[] _pfns;                   // guarded by _mutex: frame + 1 of each page, 0 = none (one host reference each)
    private readonly List<GrantFaulter> _faulters = [];   // guarded by _mutex: faults that took or are taking a page, mutex released
    private GrantView[] _views = [];                  // guarded by _mutex (replaced whole, read lock-free by reports)
    private bool _removed;                            // guarded by _mutex
    // guarded by _mutex: grant pages of the owner's invalidations between their start
    // (the recall) and their end. A host may change its PTEs after the start without a
    // lock get_user_pages waits for (the test host does), so a fill of such a page would
    // find the old frame: fills of these pages wait until the end.
    // A batch's entry lists its grant pages (sorted); null: every page of [First, Last].
    private readonly List<(ulong First, ulong Last, ulong[]? Pages)> _inProgress = [];
    private GrantCounts _counts;                      // guarded by _mutex; read racily for reports
    private long _markedFaults;                       // interlocked: faults that found their mark
    private bool _registered;

    /// <param name="key">The 64-bit key other VMs attach it by.</param>
    /// <param name="owner">The VM that made it (only it may remove it).</param>
    /// <param name="ownerHost">The owner's host address space as a secondary MMU sees it.</param>
    /// <param name="ownerMadvise">The owner's madvise (PAGEOUT of an attached range pages out the owner's pages).</param>
    /// <param name="gpa">Where the range starts in the owner's RAM.</param>
    /// <param name="start">Where it starts in the owner's host address space.</param>
    /// <param name="bytes">Its size, page-aligned, non-empty.</param>
    public Grant(ulong key, object owner, IHostMemory ownerHost, IHostMadvise ownerMadvise, Gpa gpa, Hva start, ulong bytes)
    {
        Debug.Assert(bytes != 0 && (bytes & Page.OffsetMask) == 0 && start.PageOffset == 0, "a grant is whole pages");
        Key = key;
        Owner = owner;
        OwnerHost = ownerHost;
        OwnerMadvise = ownerMadvise;
        OwnerGpa = gpa;
        Start = start;
        Bytes = bytes;
        _pfns = new ulong[bytes >> Page.Shift];
        ownerHost.Notifiers.Register(this);
        _registered = true;
    }

    public ulong Key { get; }
    public object Owner { get; }
    public IHostMemory OwnerHost { get; }
    public IHostMadvise OwnerMadvise { get; }
    public Gpa OwnerGpa { get; }
    public Hva Start { get; }
    public ulong Bytes { get; }
    public Hva End => Start.Add(Bytes);

    /// <summary>Recalls, pages recalled, faulters marked, PFN fills so far (a racy snapshot).</summary>
    public GrantCounts Counts => _counts with { MarkedFaults = Interlocked.Read(ref _markedFaults) };

    /// <summary>Attachers now.</summary>
    public int Attachers => Volatile.Read(ref _views).Length;

    /// <summary>Pages the PFN table holds a reference to now.</summary>
    public int FilledPages
    {
        get { lock (_mutex) return _pfns.Count(p => p != 0); }
    }

    /// <summary>Test seam: runs on the faulting thread after get_user_pages returned, before the grant's mutex is taken again.</summary>
    internal Action<ulong, Hfn>? AfterGetUserPageHook { get; set; }

    // ---- attachers ----------------------------------------------------------

    /// <summary>A new view of the first <paramref name="bytes"/> of the grant for one attacher's secondary MMU; null once removed.</summary>
    public GrantView? NewView(ulong bytes)
    {
        Debug.Assert(bytes <= Bytes, "the attach call checked the size");
        var view = new GrantView(this, bytes);
        lock (_mutex)
        {
            if (_removed) return null;
            _views = [.. _views, view];
        }
        return view;
    }

    /// <summary>
    /// The attacher of <paramref name="view"/> goes: from now on its faults find no
    /// page, and every fault of it in flight is marked for retry (it will not install).
    /// The view stays among the recalled ones: the caller zaps the attacher's MMU and
    /// flushes its vCPUs, and until then a recall must still zap them, or the host could
    /// free a frame the attacher still maps. Then <see cref="ForgetView"/>.
    /// </summary>
    public void CloseView(GrantView view)
    {
        lock (_mutex)
        {
            view.ClosedLocked = true;
            foreach (var f in _faulters)
                if (f.View == view) f.Retry = true;
        }
    }

    /// <summary>The closed <paramref name="view"/>'s MMU holds no entry any more: recalls leave it out from now on.</summary>
    public void ForgetView(GrantView view)
    {
        lock (_mutex)
        {
            System.Diagnostics.Debug.Assert(view.ClosedLocked, "a view is closed before it is forgotten");
            _views = [.. _views.Where(v => v != view)];
        }
    }

    /// <summary>
    /// Remove the grant (its attachers were closed first): recall everything, drop
    /// every reference, leave the owner's notifiers. Not from inside a notifier callback.
    /// </summary>
    public void Remove()
    {
        var drop = new List<Hfn>();
        lock (_mutex)
        {
            _removed = true;
            foreach (var f in _faulters) f.Retry = true;
            foreach (var v in _views) v.ClosedLocked = true;
            _views = [];
            for (int i = 0; i < _pfns.Length; i++)
                if (_pfns[i] != 0) { drop.Add(new Hfn((uint)(_pfns[i] - 1))); _pfns[i] = 0; }
        }
        foreach (var f in drop) OwnerHost.PutUserPage(f, PageRelease.Unused);
        if (_registered)
        {
            OwnerHost.Notifiers.Unregister(this);
            _registered = false;
        }
    }

    // ---- the attachers' faults (GrantView) ----------------------------------

    /// <summary>get_user_pages for an attacher: the page's frame from the PFN table, filled from the owner on a miss.</summary>
    internal HostFaultResult GetUserPage(GrantView view, ulong page, out Hfn frame, out FaultKind kind)
    {
        frame = default;
        kind = FaultKind.Present;
        if (GrantFaulter.Current is { } stale) stale.Grant.PutUserPage(stale);
        while (true)
        {
            Hfn got = default;
            bool fill;
            var faulter = new GrantFaulter(this, view, page);
            bool wait;
            lock (_mutex)
            {
                if (_removed || view.ClosedLocked) return HostFaultResult.NoMapping;
                wait = InProgressLocked(page);
                if (!wait)
                {
                    PruneFaultersLocked();
                    _faulters.Add(faulter);
                    fill = _pfns[page] == 0;
                    if (!fill) got = new Hfn((uint)(_pfns[page] - 1));
                }
                else fill = false;
            }
            if (wait)
            {
                Thread.Yield();   // the owner's invalidation of this page has not ended: let it
                continue;
            }
            if (fill)
            {
                // get_user_pages takes the owner's address-space lock: never under the mutex.
                // Always for write: the grant is a writable share, and a write fault must
                // not find a read-only frame in the table.
                var r = OwnerHost.GetUserPage(Start.Add(page << Page.Shift), write: true, out got, out var how);
                if (how > kind) kind = how;
                AfterGetUserPageHook?.Invoke(page, got);
                bool retry;
                Hfn? unused = null;
                lock (_mutex)
                {
                    if (r != HostFaultResult.Ok)
                    {
                        _faulters.Remove(faulter);
                        return r;
                    }
                    retry = faulter.Retry || _removed || view.ClosedLocked || InProgressLocked(page);
                    if (retry) { _faulters.Remove(faulter); unused = got; _counts.Retries++; }
                    else if (_pfns[page] != 0) { unused = got; got = new Hfn((uint)(_pfns[page] - 1)); }
                    else { _pfns[page] = got.Value + 1UL; _counts.Fills++; }   // the get_user_pages reference is the grant's now
                }
                if (unused is { } u) OwnerHost.PutUserPage(u, PageRelease.Unused);
                if (retry) continue;
            }
            faulter.Frame = got;
            GrantFaulter.Current = faulter;
            frame = got;
            return HostFaultResult.Ok;
        }
    }

    /// <summary>
    /// The attacher's fault is over (installed, or given back to retry). Takes no lock:
    /// a secondary MMU may give a page back with its own MMU lock held (the retry path),
    /// and a recall holds the mutex while it takes that lock. The record is marked
    /// finished and leaves the list the next time the mutex is held. Nothing goes to the
    /// host: the fault took no reference of its own, and a dirty page reaches the owner's
    /// page through the attacher's entry when it is zapped (before the grant lets go of it).
    /// </summary>
    internal void PutUserPage(GrantFaulter faulter)
    {
        if (ReferenceEquals(GrantFaulter.Current, faulter)) GrantFaulter.Current = null;
        if (faulter.Retry) Interlocked.Increment(ref _markedFaults);
        faulter.Finished = true;
    }

    /// <summary>Drop the records of faults that are over (under the mutex).</summary>
    private void PruneFaultersLocked()
    {
        Debug.Assert(_mutex.IsHeldByCurrentThread, "the faulters list is the mutex's");
        _faulters.RemoveAll(static f => f.Finished);
    }

    // ---- the owner's notifiers: recall --------------------------------------

    /// <summary>The recall; fills of the range then wait for its end.</summary>
    public bool InvalidateRangeStart(in InvalidateRange range) => Recall(range, untilEnd: true);

    /// <summary>The host's PTEs of the range (or batch) hold their new values: fills of it may go on.</summary>
    public void InvalidateRangeEnd(in InvalidateRange range)
    {
        if (!range.TryClip(Start, End, out var r)) return;
        var (first, last, pages) = GrantPagesOf(r);
        lock (_mutex)
        {
            // A loop, not FindIndex: a lambda over the range would allocate its closure on every end.
            for (int i = 0; i < _inProgress.Count; i++)
            {
                var p = _inProgress[i];
                if (p.First != first || p.Last != last || (p.Pages is null ? pages is not null : pages is null || !p.Pages.AsSpan().SequenceEqual(pages))) continue;
                _inProgress.RemoveAt(i);
                break;
            }   // none found: the recall was refused, or met no page
        }
    }

    /// <summary>A clipped range's grant pages: [first, last], and a batch's list of them (null: all of them).</summary>
    private (ulong First, ulong Last, ulong[]? Pages) GrantPagesOf(in InvalidateRange clipped)
    {
        ulong basePage = Start.PageNumber;
        ulong first = clipped.Start.PageNumber - basePage, last = clipped.End.PageNumber - 1 - basePage;
        if (clipped.BatchPages is not { } batch) return (first, last, null);
        var pages = new ulong[batch.Length];
        for (int i = 0; i < batch.Length; i++) pages[i] = batch[i] - basePage;
        return (first, last, pages);
    }

    private bool InProgressLocked(ulong page)
    {
        Debug.Assert(_mutex.IsHeldByCurrentThread, "the ranges in progress are the mutex's");
        foreach (var (first, last, pages) in _inProgress)
            if (page >= first && page <= last && (pages is null || Array.BinarySearch(pages, page) >= 0)) return true;
        return false;
    }

    /// <summary>The broken-2008 owner: the page is recalled after its PTE changed (too late, as for any subscriber).</summary>
    public void InvalidatePage(Hva address) =>
        Recall(new InvalidateRange(address.PageBase, address.PageBase.Add(Page.Size), InvalidateEvent.Clear, true));

    public void Release() => Recall(new InvalidateRange(Start, End, InvalidateEvent.Release, true));

    public bool ClearFlushYoung(Hva start, Hva end) => Clip(start, end, out var s, out var e) && Views(v => v.Notifiers.ClearFlushYoung(s, e));

    public bool ClearYoung(Hva start, Hva end) => Clip(start, end, out var s, out var e) && Views(v => v.Notifiers.ClearYoung(s, e));

    public bool TestYoung(Hva address) => Clip(address.PageBase, address.PageBase.Add(Page.Size), out _, out _) && Views(v => v.Notifiers.TestYoung(address));

    private bool Views(Func<GrantView, bool> young)
    {
        bool any = false;
        foreach (var v in Volatile.Read(ref _views)) any |= young(v);
        return any;
    }

    /// <summary>
    /// recall_PFNs: mark the faulters covering the range (a batch: its listed pages)
    /// for retry, zap every attacher's entries and shoot down their TLBs (one start and
    /// end per attacher, the batch passed on), drop the grant's references. On return no
    /// attacher maps a page of it or will install one, and the grant holds none of them:
    /// the host may free the frames.
    /// </summary>
    private bool Recall(in InvalidateRange asked, bool untilEnd = false)
    {
        if (!asked.TryClip(Start, End, out var sub)) return true;
        bool mayBlock = asked.MayBlock;
        long began = Stopwatch.GetTimestamp();
        var (first, last, pages) = GrantPagesOf(sub);
        // The frames to give back once the mutex is released, at most one per page of the range;
        // pooled, so that a recall allocates nothing (bar a batch's page list).
        var drop = ArrayPool<Hfn>.Shared.Rent(pages?.Length ?? (int)(last - first + 1));
        int dropped = 0;
        if (mayBlock) _mutex.Enter();
        else if (!_mutex.TryEnter()) { ArrayPool<Hfn>.Shared.Return(drop); return false; }   // "would block": the host backs off and retries
        try
        {
            PruneFaultersLocked();
            foreach (var f in _faulters)
                if (f.Page >= first && f.Page <= last && (pages is null || Array.BinarySearch(pages, f.Page) >= 0)) f.Retry = true;
            foreach (var view in _views)
            {
                // Each attacher's start zaps its entries of the range and waits for its vCPUs' flushes.
                if (!view.Notifiers.InvalidateRangeStart(sub)) { ArrayPool<Hfn>.Shared.Return(drop); return false; }
                view.Notifiers.InvalidateRangeEnd(sub);
            }
            if (pages is null)
            {
                for (ulong i = first; i <= last; i++) DropLocked(i, drop, ref dropped);
            }
            else
            {
                foreach (ulong i in pages) DropLocked(i, drop, ref dropped);
            }
            if (untilEnd) _inProgress.Add((first, last, pages));
            _counts.Recalls++;
            _counts.RecalledPages += dropped;
        }
        finally { _mutex.Exit(); }
        // The host's PTE (and its caller) still hold the page: these puts free nothing.
        foreach (var f in drop.AsSpan(0, dropped)) OwnerHost.PutUserPage(f, PageRelease.Unused);
        ArrayPool<Hfn>.Shared.Return(drop);
        RecallTimed?.Invoke(dropped, Attachers, Stopwatch.GetTimestamp() - began);
        return true;
    }

    /// <summary>Take grant page <paramref name="page"/>'s frame out of the PFN table; its reference goes to <paramref name="drop"/>[<paramref name="dropped"/>++].</summary>
    private void DropLocked(ulong page, Hfn[] drop, ref int dropped)
    {
        Debug.Assert(_mutex.IsHeldByCurrentThread, "the PFN table is the mutex's");
        if (_pfns[page] == 0) return;
        drop[dropped++] = new Hfn((uint)(_pfns[page] - 1));
        _pfns[page] = 0;
    }

    /// <summary>For measurements: after each recall, (pages dropped, attachers, Stopwatch ticks it took).</summary>
    public Action<int, int, long>? RecallTimed { get; set; }

    private bool Clip(Hva start, Hva end, out Hva s, out Hva e)
    {
        s = new Hva(Math.Max(start.Value, Start.Value));
        e = new Hva(Math.Min(end.Value, End.Value));
        return s.Value < e.Value;
    }

    public override string ToString() => $"grant 0x{Key:x} [{OwnerGpa}, +0x{Bytes:x})";
}

/// <summary>What a grant has done so far.</summary>
public record struct GrantCounts
{
    /// <summary>Recalls that covered part of the grant.</summary>
    public long Recalls;
    /// <summary>Page references those recalls dropped.</summary>
    public long RecalledPages;
    /// <summary>Attacher faults a recall marked for retry after they took their page.</summary>
    public long MarkedFaults;
    /// <summary>Fills of the PFN table whose get_user_pages a recall overlapped (the page was given back).</summary>
    public long Retries;
    /// <summary>Fills of the PFN table by get_user_pages.</summary>
    public long Fills;

    public override readonly string ToString() =>
        $"{Recalls} recalls ({RecalledPages} pages), {Fills} fills, {Retries + MarkedFaults} faults retried";
}
