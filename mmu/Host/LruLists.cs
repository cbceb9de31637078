using System.Diagnostics;

namespace ToyVmm.Mmu.Host;

// Lock order: address-space lock -> _lock. Never held while waiting for a
// page lock, for I/O or for another address space. _lock guards both lists,
// the LruPrev/LruNext links of every frame and the OnLru bit's meaning
// (the bit is set and cleared only under _lock).

/// <summary>
/// The active and inactive LRU lists of reclaimable frames, doubly linked
/// through <see cref="FrameMeta.LruPrev"/>/<see cref="FrameMeta.LruNext"/>.
/// New and refaulted pages enter the active head; aging moves cold pages from
/// the active tail to the inactive head; reclaim takes from the inactive tail.
/// </summary>
internal sealed class LruLists
{
    private const uint None = FrameMeta.NoFrame;

    private struct List { public uint Head, Tail; public int Count; }

    private readonly FramePool _frames;
    private readonly Lock _lock = new();
    private List _active = new() { Head = None, Tail = None };     // guarded by _lock
    private List _inactive = new() { Head = None, Tail = None };   // guarded by _lock

    public LruLists(FramePool frames) => _frames = frames;

    public int ActiveCount => Volatile.Read(ref _active.Count);
    public int InactiveCount => Volatile.Read(ref _inactive.Count);

    /// <summary>Put a frame that is on no list (new, or isolated) at the head of a list.</summary>
    public void Add(uint f, bool active)
    {
        lock (_lock) AddLocked(f, active);
    }

    /// <summary>
    /// Add unless the frame is already listed or isolated (an isolated frame is put back by its reclaimer).
    /// The caller holds a reference, so the frame cannot be freed meanwhile.
    /// </summary>
    public void AddIfAbsent(uint f, bool active)
    {
        lock (_lock)
        {
            if ((_frames.FlagsOf(f) & (FrameFlags.OnLru | FrameFlags.Isolated)) != 0) return;
            AddLocked(f, active);
        }
    }

    /// <summary>Unlink a frame whose last reference is gone (it cannot be isolated: isolation holds one).</summary>
    public void RemoveIfListed(uint f)
    {
        if (!_frames.Has(f, FrameFlags.OnLru)) return;   // set/cleared only under _lock; a stale true is re-checked below
        lock (_lock)
        {
            if (_frames.Has(f, FrameFlags.OnLru)) UnlinkLocked(f);
        }
    }

    /// <summary>
    /// Take up to <paramref name="max"/> frames off the tail of a list, each with
    /// a reference, marked <see cref="FrameFlags.Isolated"/>. Frames whose last
    /// reference is being dropped are skipped (their releaser unlinks them).
    /// </summary>
    public int Isolate(bool fromActive, int max, List<uint> into, out int scanned)
    {
        scanned = 0;
        lock (_lock)
        {
            ref List list = ref fromActive ? ref _active : ref _inactive;
            uint f = list.Tail;
            int taken = 0;
            while (f != None && taken < max && scanned < max * 4)
            {
                uint prev = _frames.Meta(f).LruPrev;
                scanned++;
                if (_frames.TryGetPageUnlessZero(f))
                {
                    UnlinkLocked(f);
                    _frames.Set(f, FrameFlags.Isolated);
                    into.Add(f);
                    taken++;
                }
                f = prev;
            }
            return taken;
        }
    }

    /// <summary>
    /// Look (without taking anything off) at the frames mapped by address space
    /// <paramref name="spaceId"/> at pages [<paramref name="startVpn"/>, <paramref name="endVpn"/>),
    /// in the order reclaim would reach them (<paramref name="hottestFirst"/> false: inactive
    /// tail to head, then active tail to head) or the opposite order, and add up to
    /// <paramref name="max"/> of them with the page each maps. The owner is read racily
    /// (it changes under the address-space lock, which nests outside this one): the
    /// caller re-checks each pair under that lock.
    /// </summary>
    public void CollectOwned(bool hottestFirst, int spaceId, ulong startVpn, ulong endVpn, int max, List<(uint Frame, ulong Vpn)> into)
    {
        lock (_lock)
        {
            if (hottestFirst)
            {
                CollectLocked(_active.Head, towardTail: true, spaceId, startVpn, endVpn, max, into);
                CollectLocked(_inactive.Head, towardTail: true, spaceId, startVpn, endVpn, max, into);
            }
            else
            {
                CollectLocked(_inactive.Tail, towardTail: false, spaceId, startVpn, endVpn, max, into);
                CollectLocked(_active.Tail, towardTail: false, spaceId, startVpn, endVpn, max, into);
            }
        }
    }

    private void CollectLocked(uint f, bool towardTail, int spaceId, ulong startVpn, ulong endVpn, int max, List<(uint, ulong)> into)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread, "the LRU lock is held");
        while (f != None && into.Count < max)
        {
            ref FrameMeta m = ref _frames.Meta(f);
            ulong owner = Volatile.Read(ref m.Owner);
            if (owner != 0 && FrameMeta.OwnerSpace(owner) == spaceId)
            {
                ulong vpn = FrameMeta.OwnerVpn(owner);
                if (vpn >= startVpn && vpn < endVpn) into.Add((f, vpn));
            }
            f = towardTail ? m.LruNext : m.LruPrev;
        }
    }

    /// <summary>Return an isolated frame to a list head. The caller still drops its own reference afterwards.</summary>
    public void Putback(uint f, bool active)
    {
        lock (_lock)
        {
            Debug.Assert(_frames.Has(f, FrameFlags.Isolated), "only isolated frames are put back");
            _frames.Clear(f, FrameFlags.Isolated);
            AddLocked(f, active);
        }
    }

    /// <summary>Forget the isolation of a frame about to be freed by its reclaimer.</summary>
    public void EndIsolation(uint f)
    {
        lock (_lock) _frames.Clear(f, FrameFlags.Isolated);
    }

    /// <summary>End the isolation of a batch of frames that reclaim is about to free, under one lock hold.</summary>
    public void EndIsolation(ReadOnlySpan<uint> frames)
    {
        if (frames.IsEmpty) return;
        lock (_lock)
            foreach (uint f in frames) _frames.Clear(f, FrameFlags.Isolated);
    }

    /// <summary>Unlink the listed ones of a batch of frames whose last reference is gone, under one lock hold.</summary>
    public void RemoveFreed(ReadOnlySpan<uint> frames)
    {
        bool any = false;
        foreach (uint f in frames) any |= _frames.Has(f, FrameFlags.OnLru);
        if (!any) return;   // set/cleared only under _lock; a stale true is re-checked below
        lock (_lock)
            foreach (uint f in frames)
                if (_frames.Has(f, FrameFlags.OnLru)) UnlinkLocked(f);
    }

    private void AddLocked(uint f, bool active)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread, "the LRU lock is held");
        Debug.Assert((_frames.FlagsOf(f) & (FrameFlags.OnLru | FrameFlags.Isolated | FrameFlags.Free)) == 0, "the frame is on no list");
        ref List list = ref active ? ref _active : ref _inactive;
        ref FrameMeta m = ref _frames.Meta(f);
        m.LruPrev = None;
        m.LruNext = list.Head;
        if (list.Head != None) _frames.Meta(list.Head).LruPrev = f; else list.Tail = f;
        list.Head = f;
        list.Count++;
        _frames.Set(f, active ? FrameFlags.OnLru | FrameFlags.Active : FrameFlags.OnLru);
        if (!active) _frames.Clear(f, FrameFlags.Active);
    }

    private void UnlinkLocked(uint f)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread, "the LRU lock is held");
        bool active = _frames.Has(f, FrameFlags.Active);
        ref List list = ref active ? ref _active : ref _inactive;
        ref FrameMeta m = ref _frames.Meta(f);
        if (m.LruPrev != None) _frames.Meta(m.LruPrev).LruNext = m.LruNext; else list.Head = m.LruNext;
        if (m.LruNext != None) _frames.Meta(m.LruNext).LruPrev = m.LruPrev; else list.Tail = m.LruPrev;
        m.LruPrev = m.LruNext = None;
        list.Count--;
        _frames.Clear(f, FrameFlags.OnLru);
    }
}
