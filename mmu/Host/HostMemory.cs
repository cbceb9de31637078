using System.Diagnostics;
using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Mmu.Host;

// Lock order (mmu/LOCKING.md has the whole picture):
//   page lock -> address-space lock -> notifier callbacks (secondary MMU lock)
//             -> LRU lock -> swap lock -> allocator lock
// _spacesLock is a leaf used only to add and remove address spaces.

/// <summary>
/// The simulated host kernel's memory manager: the frame pool, the allocator,
/// the LRU lists, swap and reclaim, and the address spaces that use them.
/// </summary>
public sealed partial class HostMemory : IDisposable
{
    private readonly Lock _spacesLock = new();
    private HostAddressSpace?[] _spaces = new HostAddressSpace?[16];   // by id; replaced (grown) under _spacesLock, read lock-free
    private int _nextSpaceId = 1;                                     // guarded by _spacesLock

    public HostMemory(HostMemoryOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        Frames = new FramePool(options.FrameCount);
        var (min, low, high) = options.Watermarks();
        Allocator = new FrameAllocator(Frames, this, min, low, high);
        Lru = new LruLists(Frames);
        try
        {
            Swap = new SwapSpace(Frames, options.SwapBytes, options.SwapFilePath);
        }
        catch
        {
            Frames.Dispose();
            throw;
        }
        Reclaim = new Reclaimer(this);
    }

    public HostMemoryOptions Options { get; }
    public FramePool Frames { get; }
    public SwapSpace Swap { get; }
    public HostStats Stats { get; } = new();

    /// <summary>Optional recorder of page-out batches, swap writes and swap reads (the measurement hub).</summary>
    public IMmuEventSink? Events { get; set; }
    internal FrameAllocator Allocator { get; }
    internal LruLists Lru { get; }
    internal Reclaimer Reclaim { get; }

    /// <summary>Frames in service: the pool less the frames a shrink has retired.</summary>
    public int FrameCount => Allocator.InService;
    public int FreeFrames => Allocator.FreeCount;
    /// <summary>Frames taken out of service by <see cref="Shrink"/> so far.</summary>
    public int RetiredFrames => Allocator.Retired;
    /// <summary>Frames a shrink still waits for reclaim to free.</summary>
    public int ShrinkDebt => Allocator.RetireDebt;
    /// <summary>The free-frame watermarks now (scaled down by a shrink).</summary>
    public (int Min, int Low, int High) Watermarks => Allocator.Watermarks;
    public int ActiveFrames => Lru.ActiveCount;
    public int InactiveFrames => Lru.InactiveCount;

    /// <summary>A new, empty host address space (an "mm").</summary>
    public HostAddressSpace CreateAddressSpace()
    {
        lock (_spacesLock)
        {
            int id = _nextSpaceId++;
            if (id >= 1 << 23) throw new InvalidOperationException("too many address spaces");
            if (id >= _spaces.Length)
            {
                var grown = new HostAddressSpace?[_spaces.Length * 2];
                Array.Copy(_spaces, grown, _spaces.Length);
                Volatile.Write(ref _spaces, grown);
            }
            var mm = new HostAddressSpace(this, id);
            Volatile.Write(ref _spaces[id], mm);
            return mm;
        }
    }

    internal void RemoveAddressSpace(HostAddressSpace mm)
    {
        lock (_spacesLock) Volatile.Write(ref _spaces[mm.Id], null);
    }

    internal HostAddressSpace? SpaceById(int id)
    {
        var spaces = Volatile.Read(ref _spaces);
        return (uint)id < (uint)spaces.Length ? Volatile.Read(ref spaces[id]) : null;
    }

    internal IEnumerable<HostAddressSpace> Spaces()
    {
        var spaces = Volatile.Read(ref _spaces);
        foreach (var s in spaces) if (s is not null) yield return s;
    }

    // ---- frame references ------------------------------------------------------

    /// <summary>Drop a reference; the last one unlinks the frame from the LRU and frees it.</summary>
    internal void PutPage(uint f)
    {
        int left = Interlocked.Decrement(ref Frames.Meta(f).RefCount);
        Debug.Assert(left >= 0, "no frame is put more often than it was got");
        if (left != 0) return;
        Lru.RemoveIfListed(f);
        FrameFreed?.Invoke(new Hfn(f));
        Allocator.Free(f);
    }

    /// <summary>
    /// Drop the caller's reference to each frame of a batch; the frames whose last
    /// reference that was are freed together (one LRU and one allocator lock hold).
    /// </summary>
    internal void PutPages(ReadOnlySpan<uint> frames, List<uint> scratch)
    {
        scratch.Clear();
        foreach (uint f in frames)
        {
            int left = Interlocked.Decrement(ref Frames.Meta(f).RefCount);
            Debug.Assert(left >= 0, "no frame is put more often than it was got");
            if (left == 0) scratch.Add(f);
        }
        if (scratch.Count == 0) return;
        var freed = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(scratch);
        Lru.RemoveFreed(freed);
        if (FrameFreed is { } freedHook)
            foreach (uint f in freed) freedHook(new Hfn(f));
        Allocator.FreeMany(freed);
        scratch.Clear();
    }

    /// <summary>
    /// Called just before a frame goes back to the free list (after every
    /// invalidation that unmapped it has run); for invariant checkers. Runs on
    /// whichever thread drops the last reference, with no host lock held but
    /// possibly a page lock released just before; it must not call back into the host.
    /// </summary>
    public Action<Hfn>? FrameFreed { get; set; }

    /// <summary>Give back a <c>GetUserPages</c> reference, saying how the page was used.</summary>
    public void ReleasePage(Hfn frame, PageRelease how)
    {
        Frames.CheckFrame(frame);
        uint f = frame.Value;
        Debug.Assert(Frames.RefCountOf(f) > 0, "the caller holds a reference");
        // Read before the interlocked OR: the bits are usually set already, and an
        // uncontended read is far cheaper than a locked instruction on the fault path.
        if (how == PageRelease.Dirty)
        {
            const FrameFlags both = FrameFlags.Dirty | FrameFlags.Referenced;
            if ((Frames.FlagsOf(f) & both) != both) Frames.Set(f, both);
        }
        else if (how == PageRelease.Clean) Frames.MarkPageAccessed(frame);
        PutPage(f);
    }

    /// <inheritdoc cref="FramePool.SetPageDirty"/>
    public void SetPageDirty(Hfn frame) => Frames.SetPageDirty(frame);

    /// <inheritdoc cref="FramePool.MarkPageAccessed"/>
    public void MarkPageAccessed(Hfn frame) => Frames.MarkPageAccessed(frame);

    /// <inheritdoc cref="FramePool.PagePointer"/>
    public unsafe byte* PagePointer(Hfn frame) => Frames.PagePointer(frame);

    // ---- background reclaim --------------------------------------------------

    /// <summary>What the background reclaimer blocks on; the allocator and a shrink signal it.</summary>
    internal ReclaimerWake ReclaimerWake { get; } = new();

    /// <summary>Owe the background reclaimer a round to the high watermark (cheap while one is owed already).</summary>
    internal void WakeReclaimer() => ReclaimerWake.Signal();

    /// <summary>
    /// Shrink the frame pool by <paramref name="bytes"/> (rounded down to frames)
    /// while it is in use: free frames leave service at once, the rest as reclaim
    /// frees them; the watermarks scale down with it. Never below
    /// <see cref="FrameAllocator.MinFramesInService"/> frames plus the high
    /// watermark: a larger shrink is clamped (the result says so). Takes only the
    /// allocator lock; call with no host lock held.
    /// </summary>
    public HostShrinkResult Shrink(ulong bytes) => Allocator.Shrink((int)Math.Min(int.MaxValue, bytes >> Page.Shift));

    /// <summary>Reclaim synchronously until <paramref name="frames"/> are freed or nothing more can be (tests, the CLI).</summary>
    public int ReclaimNow(int frames, bool ignoreAccessed = false) => Reclaim.DirectReclaim(frames, ignoreAccessed ? 2 : 0, countAsDirect: false);

    public void Dispose()
    {
        foreach (var mm in Spaces().ToList()) mm.Dispose();
        Swap.Dispose();
        Frames.Dispose();
    }
}
