using System.Diagnostics;
using System.Numerics;

namespace ToyVmm.Mmu.Host;

// Lock order: address-space lock -> _lock; _lock is a leaf for everything but
// the frame pool's atomic fields. Never held across I/O.
// _lock guards: the slot bitmap and cursor, the chunks' PTE counts and cache, and the
// SwapSlot field / SwapCache bit of every frame in the cache. Checksums of a
// slot are written only by the holder of the cached frame's page lock.

/// <summary>
/// Swap: a file of 4 KiB slots, a slot allocator, and the swap cache (slot to
/// frame), so that a page whose swap copy is current is dropped without a
/// second write, and a page being swapped in is found by every faulting thread.
/// </summary>
/// <remarks>
/// A slot is in use while a swap PTE names it (its PTE count) or a frame
/// caches it; it is freed when both are gone. A cached frame holds one reference.
/// </remarks>
public sealed partial class SwapSpace : IDisposable
{
    private readonly FramePool _frames;
    private readonly Lock _lock = new();
    private readonly ulong[] _used;       // bitmap of slots in use; guarded by _lock
    private readonly SlotChunk?[] _chunks; // per-slot bookkeeping, a chunk made when its first slot is allocated (under _lock), never freed
    private readonly ulong[] _written;    // bitmap: slot holds a good copy; written under the cached frame's page lock
    private int _lowestFreeWord;          // no word of _used below it has a free bit; guarded by _lock
    private int _inUse;                   // guarded by _lock

    internal SwapSpace(FramePool frames, ulong bytes, string? path)
    {
        _frames = frames;
        SlotCount = (uint)(bytes >> Page.Shift);
        int words = (int)((SlotCount + 63) / 64);
        _used = new ulong[words];
        _written = new ulong[words];
        _chunks = new SlotChunk?[(SlotCount + SlotChunk.Slots - 1) / SlotChunk.Slots];
        if (words > 0 && SlotCount % 64 != 0) _used[^1] = ~0UL << (int)(SlotCount % 64);  // slots past the end are never free
        OpenFile(path);
    }

    public uint SlotCount { get; }
    public int SlotsInUse => Volatile.Read(ref _inUse);
    public bool Enabled => SlotCount > 0;

    /// <summary>Test hook that makes swap I/O fail.</summary>
    public ISwapFaultInjector? FaultInjector { get; set; }

    // ---- per-slot bookkeeping ----------------------------------------------

    /// <summary>
    /// The bookkeeping of <see cref="Slots"/> consecutive slots: 13 bytes a slot, made
    /// when the first of them is allocated. Slots are handed out next-fit from low
    /// to high, so a swap space sized for a large guest that uses little of it
    /// costs a chunk per 16 MiB in use, not 13 bytes per slot of the whole file.
    /// </summary>
    private sealed class SlotChunk
    {
        public const int Shift = 12;
        public const uint Slots = 1u << Shift;
        public const uint Mask = Slots - 1;
        public readonly byte[] PteRefs = new byte[Slots];     // swap PTEs naming each slot (0 or 1: mappings are private); guarded by _lock
        public readonly uint[] Cache = CreateCache();          // cached frame per slot or NoFrame; guarded by _lock
        public readonly ulong[] Checksum = new ulong[Slots];   // of the slot's last good write; written under the cached frame's page lock

        private static uint[] CreateCache()
        {
            var c = new uint[Slots];
            Array.Fill(c, FrameMeta.NoFrame);
            return c;
        }
    }

    /// <summary>The chunk of an allocated slot (it exists from the slot's first allocation on).</summary>
    private SlotChunk ChunkOf(uint slot)
    {
        var c = Volatile.Read(ref _chunks[slot >> SlotChunk.Shift]);
        Debug.Assert(c is not null, "an allocated slot has its bookkeeping");
        return c!;
    }

    private ref byte PteRefOf(uint slot) => ref ChunkOf(slot).PteRefs[slot & SlotChunk.Mask];
    private ref uint CacheOf(uint slot) => ref ChunkOf(slot).Cache[slot & SlotChunk.Mask];
    private ref ulong ChecksumOf(uint slot) => ref ChunkOf(slot).Checksum[slot & SlotChunk.Mask];

    /// <summary>Chunks of slot bookkeeping made so far (each covers 4096 slots).</summary>
    public int BookkeepingChunks
    {
        get
        {
            int n = 0;
            for (int i = 0; i < _chunks.Length; i++) if (Volatile.Read(ref _chunks[i]) is not null) n++;
            return n;
        }
    }

    // ---- slots -------------------------------------------------------------

    /// <summary>
    /// The lowest free slot. Lowest first reuses the slots that swap-ins freed, whose file
    /// pages the page cache still holds: rewriting those costs the kernel about half what a
    /// first write into a hole does (bench/RESULTS.md "Page-out CPU per page"), and the
    /// sparse file grows only as far as the most slots ever in use. A batch still gets
    /// consecutive slots (one vectored write) wherever the lowest free slots form a run,
    /// as the slots a batch's swap-ins freed do.
    /// </summary>
    private uint AllocateSlotLocked()
    {
        Debug.Assert(_lock.IsHeldByCurrentThread, "the swap lock is held");
        if (_inUse >= SlotCount) return FrameMeta.NoSlot;
        int w = _lowestFreeWord;
        while (_used[w] == ~0UL) w++;   // in range: _inUse < SlotCount, and slots past the end are marked used
        _lowestFreeWord = w;
        uint slot = (uint)(w * 64 + BitOperations.TrailingZeroCount(~_used[w]));
        _used[w] |= 1UL << (int)(slot % 64);
        if (_chunks[slot >> SlotChunk.Shift] is null) Volatile.Write(ref _chunks[slot >> SlotChunk.Shift], new SlotChunk());
        _inUse++;
        ClearWritten(slot);
        return slot;
    }

    private void FreeSlotLocked(uint slot)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread, "the swap lock is held");
        Debug.Assert(PteRefOf(slot) == 0 && CacheOf(slot) == FrameMeta.NoFrame, "a freed slot is named by no PTE and caches no frame");
        Debug.Assert((_used[slot / 64] & (1UL << (int)(slot % 64))) != 0, "the slot is in use");
        _used[slot / 64] &= ~(1UL << (int)(slot % 64));
        if ((int)(slot / 64) < _lowestFreeWord) _lowestFreeWord = (int)(slot / 64);
        _inUse--;
    }

    internal bool IsSlotInUse(uint slot) { lock (_lock) return (_used[slot / 64] & (1UL << (int)(slot % 64))) != 0; }
    internal int PteRefs(uint slot) { lock (_lock) return _chunks[slot >> SlotChunk.Shift] is null ? 0 : PteRefOf(slot); }
    internal uint CachedFrame(uint slot) { lock (_lock) return _chunks[slot >> SlotChunk.Shift] is null ? FrameMeta.NoFrame : CacheOf(slot); }

    /// <summary>A PTE now names the slot (reclaim unmapped its cached page).</summary>
    internal void PteRefIncrement(uint slot)
    {
        lock (_lock)
        {
            ref byte refs = ref PteRefOf(slot);
            Debug.Assert(refs == 0, "private mappings: one PTE per slot");
            refs++;
        }
    }

    /// <summary>A PTE that named the slot was cleared or now maps the cached frame; frees the slot when nothing else uses it.</summary>
    internal void PteRefDecrement(uint slot)
    {
        lock (_lock)
        {
            ref byte refs = ref PteRefOf(slot);
            Debug.Assert(refs > 0, "the slot was named by a PTE");
            if (--refs == 0 && CacheOf(slot) == FrameMeta.NoFrame) FreeSlotLocked(slot);
        }
    }

    // ---- swap cache --------------------------------------------------------

    /// <summary>The frame caching <paramref name="slot"/>, with a reference taken; or NoFrame.</summary>
    internal uint LookupAndGet(uint slot)
    {
        lock (_lock)
        {
            uint f = CacheOf(slot);
            if (f != FrameMeta.NoFrame) _frames.GetPage(f);   // the cache's own reference keeps it above zero
            return f;
        }
    }

    /// <summary>Cache a locked frame for a slot that a PTE names (swap-in); false if another frame got there first.</summary>
    internal bool TryAddToCache(uint slot, uint f)
    {
        lock (_lock)
        {
            if (CacheOf(slot) != FrameMeta.NoFrame) return false;
            // No PTE names the slot any more: a DontNeed or Unmap freed it while this
            // swap-in read the PTE without the address-space lock. Caching a frame
            // for a free slot would leak it and hand it to the slot's next owner.
            if (PteRefOf(slot) == 0) return false;
            CacheLocked(slot, f);
            return true;
        }
    }

    /// <summary>
    /// Give an unswapped, locked frame that reclaim is unmapping a new slot,
    /// cache it there and count the swap PTE about to name it; NoSlot when swap is full.
    /// </summary>
    internal uint AllocateAndCache(uint f)
    {
        lock (_lock)
        {
            uint slot = AllocateSlotLocked();
            if (slot == FrameMeta.NoSlot) return slot;
            CacheLocked(slot, f);
            PteRefOf(slot) = 1;
            return slot;
        }
    }

    private void CacheLocked(uint slot, uint f)
    {
        Debug.Assert(_frames.IsPageLocked(f), "frames enter the swap cache locked");
        Debug.Assert(!_frames.Has(f, FrameFlags.SwapCache), "a frame caches one slot");
        CacheOf(slot) = f;
        _frames.Meta(f).SwapSlot = slot;
        _frames.Set(f, FrameFlags.SwapCache);
        _frames.GetPage(f);
    }

    /// <summary>
    /// Take a locked frame out of the swap cache if its reference count is
    /// exactly <paramref name="expectedRefs"/> (the cache's plus the caller's),
    /// so that no fault can be about to map it. Drops the cache's reference;
    /// frees the slot when no PTE names it. False when the frame is busy.
    /// </summary>
    internal bool TryRemoveFromCache(uint f, int expectedRefs)
    {
        lock (_lock)
        {
            if (_frames.RefCountOf(f) != expectedRefs) return false;
            RemoveLocked(f);
            return true;
        }
    }

    /// <summary>
    /// Reclaim's final step for a locked, unmapped, cached frame: drop it from
    /// the cache (as <see cref="TryRemoveFromCache"/>) if its swap copy is
    /// current (not dirty) or nothing can read the copy again (no PTE names
    /// the slot). One lock round trip.
    /// </summary>
    internal bool TryDropReclaimed(uint f, int expectedRefs)
    {
        lock (_lock)
        {
            uint slot = _frames.Meta(f).SwapSlot;
            bool orphan = PteRefOf(slot) == 0;
            if (!orphan && _frames.Has(f, FrameFlags.Dirty)) return false;
            if (_frames.RefCountOf(f) != expectedRefs) return false;
            RemoveLocked(f);
            return true;
        }
    }

    /// <summary>Take a locked, mapped frame out of the swap cache (its swap copy is going stale: a write fault).</summary>
    internal void RemoveFromCache(uint f)
    {
        lock (_lock) RemoveLocked(f);
    }

    private void RemoveLocked(uint f)
    {
        Debug.Assert(_frames.IsPageLocked(f), "frames leave the swap cache locked");
        Debug.Assert(_frames.Has(f, FrameFlags.SwapCache), "the frame is in the swap cache");
        uint slot = _frames.Meta(f).SwapSlot;
        ref uint cached = ref CacheOf(slot);
        Debug.Assert(cached == f, "the slot caches this frame");
        cached = FrameMeta.NoFrame;
        _frames.Meta(f).SwapSlot = FrameMeta.NoSlot;
        _frames.Clear(f, FrameFlags.SwapCache);
        int left = Interlocked.Decrement(ref _frames.Meta(f).RefCount);
        Debug.Assert(left > 0, "the caller still holds a reference");
        if (PteRefOf(slot) == 0) FreeSlotLocked(slot);
    }

    /// <summary>True when no PTE names the frame's slot: nobody can ever read the cached copy again.</summary>
    internal bool IsOrphan(uint f)
    {
        lock (_lock)
        {
            uint slot = _frames.Meta(f).SwapSlot;
            return slot != FrameMeta.NoSlot && PteRefOf(slot) == 0;
        }
    }

    private bool IsWritten(uint slot) => (Volatile.Read(ref _written[slot / 64]) & (1UL << (int)(slot % 64))) != 0;
    private void ClearWritten(uint slot) => Interlocked.And(ref _written[slot / 64], ~(1UL << (int)(slot % 64)));

    /// <summary>Set or clear the written bits of <paramref name="count"/> slots from <paramref name="first"/>: one interlocked operation per word of the bitmap, not per slot.</summary>
    private void SetWrittenRun(uint first, int count, bool written)
    {
        ulong slot = first, end = first + (ulong)count;
        while (slot < end)
        {
            int bit = (int)(slot % 64);
            int bits = (int)Math.Min((ulong)(64 - bit), end - slot);
            ulong mask = (bits == 64 ? ~0UL : (1UL << bits) - 1) << bit;
            if (written) Interlocked.Or(ref _written[slot / 64], mask);
            else Interlocked.And(ref _written[slot / 64], ~mask);
            slot += (ulong)bits;
        }
    }
}
