using System.Diagnostics;
using System.Runtime.InteropServices;

namespace ToyVmm.Mmu.Host;

// Lock order: _lock is a leaf (nothing else is taken under it). Allocation
// that may reclaim is entered with no address-space lock held (asserted in
// debug builds): direct reclaim takes the locks of other address spaces.

/// <summary>
/// The free-frame allocator with min/low/high watermarks. Below low it wakes
/// the background reclaimer; at or below min the allocating thread reclaims
/// directly; when nothing is free and nothing can be reclaimed it fails with
/// <see cref="HostFaultStatus.OutOfMemory"/>. Every frame is zeroed before it
/// is handed to a new owner (unless the caller overwrites all of it, as swap-in does).
/// </summary>
internal sealed class FrameAllocator
{
    private readonly FramePool _frames;
    private readonly HostMemory _host;
    private readonly Lock _lock = new();
    private readonly uint[] _free;      // stack of free frames; guarded by _lock
    private int _freeCount;             // guarded by _lock; read lock-free for watermark checks
    private long _frees;                // frames freed ever (interlocked); progress marker for out-of-memory decisions

    public FrameAllocator(FramePool frames, HostMemory host, int min, int low, int high)
    {
        _frames = frames;
        _host = host;
        Min = min; Low = low; High = high;
        _free = new uint[frames.Count];
        // Hand out low frames first (stack: push high ones first).
        for (int i = frames.Count - 1; i >= 0; i--) _free[_freeCount++] = (uint)i;
    }

    public int Min { get; }
    public int Low { get; }
    public int High { get; }
    public int FreeCount => Volatile.Read(ref _freeCount);

    /// <summary>
    /// Allocate one frame with a reference count of one, zeroed unless
    /// <paramref name="zero"/> is false (the caller then overwrites every byte).
    /// </summary>
    public HostFaultStatus Allocate(bool zero, out uint frame)
    {
        HostLockDebug.AssertNoAddressSpaceLockHeld();
        int free = FreeCount;
        if (free <= Low) _host.WakeReclaimer();
        if (free <= Min) _host.Reclaim.DirectReclaim(Min + _host.Options.ReclaimBatch - free, priority: 0);

        int priority = 0, fruitless = 0;
        while (!TryPop(out frame))
        {
            // Nothing free: reclaim here, harder each round (priority > 0 ignores accessed bits).
            // Out of memory only when several rounds in a row freed nothing anywhere: frames
            // another thread freed (and perhaps took) mean reclaim is still making progress.
            long freesBefore = Volatile.Read(ref _frees);
            int got = _host.Reclaim.DirectReclaim(_host.Options.ReclaimBatch, priority);
            if (got == 0 && FreeCount == 0 && Volatile.Read(ref _frees) == freesBefore)
            {
                if (++fruitless > 4)
                {
                    _host.Stats.Count(ref _host.Stats.OutOfMemory);
                    frame = FrameMeta.NoFrame;
                    return HostFaultStatus.OutOfMemory;
                }
                // Pages may be busy only for a moment (page-locked by I/O, held by a short reference).
                if (fruitless > 2) Thread.Sleep(1); else Thread.Yield();
            }
            else fruitless = 0;
            if (priority < 2) priority++;
        }

        ref FrameMeta m = ref _frames.Meta(frame);
        Debug.Assert(m.RefCount == 0 && m.MapCount == 0 && m.Owner == 0, "a free frame has no references, mappings or owner");
        m.RefCount = 1;
        m.SwapSlot = FrameMeta.NoSlot;
        Volatile.Write(ref m.Flags, (int)FrameFlags.SwapBacked);
        if (zero)
        {
            // SAFETY: the frame was just taken off the free list; nobody else can reach it.
            unsafe { NativeMemory.Clear(_frames.PageLocked(frame), (nuint)Page.Size); }
        }
        return HostFaultStatus.Ok;
    }

    private bool TryPop(out uint frame)
    {
        lock (_lock)
        {
            if (_freeCount == 0) { frame = FrameMeta.NoFrame; return false; }
            frame = _free[--_freeCount];
            return true;
        }
    }

    /// <summary>Return a frame whose last reference is gone; it is off every list and unmapped.</summary>
    public void Free(uint frame)
    {
        ref FrameMeta m = ref _frames.Meta(frame);
        Debug.Assert(m.RefCount == 0, "freed frames have no references");
        Debug.Assert(m.MapCount == 0, "freed frames are unmapped");
        Debug.Assert((m.Flags & (int)(FrameFlags.OnLru | FrameFlags.SwapCache | FrameFlags.Locked | FrameFlags.Free)) == 0,
            "freed frames are off the LRU, out of the swap cache and unlocked");
        m.Owner = 0;
        m.SwapSlot = FrameMeta.NoSlot;
        Volatile.Write(ref m.Flags, (int)FrameFlags.Free);
        lock (_lock)
        {
            Debug.Assert(_freeCount < _free.Length, "no frame is freed twice");
            _free[_freeCount++] = frame;
        }
        Interlocked.Increment(ref _frees);
    }
}
