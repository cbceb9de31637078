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
/// <remarks>
/// The pool can shrink while it is in use (<see cref="Shrink"/>): free frames
/// are retired at once; the rest of the shrink is a debt that later frees pay,
/// by retiring the frame instead of listing it, once min frames are listed.
/// Retired frames are never handed out again. The watermarks are scaled to the
/// frames left in service, so reclaim (not the caller of Shrink) frees the
/// frames the debt needs: the free list stays at or below min until it is
/// paid, which wakes the background reclaimer (below low) and makes allocation
/// reclaim directly (at min) as it would when memory runs short.
/// </remarks>
internal sealed class FrameAllocator
{
    /// <summary>A shrink never leaves fewer than this many frames in service, plus the high watermark.</summary>
    public const int MinFramesInService = 64;

    /// <summary>The free-frame watermarks; replaced whole (so a reader never sees a mix) under _lock.</summary>
    private sealed record Marks(int Min, int Low, int High);

    private readonly FramePool _frames;
    private readonly HostMemory _host;
    private readonly Lock _lock = new();
    private uint _freeHead;             // top of the stack of free frames, linked through FrameMeta.LruNext (a free frame is on no LRU); guarded by _lock
    private int _freeCount;             // guarded by _lock; read lock-free for watermark checks
    private long _frees;                // frames freed ever (interlocked); progress marker for out-of-memory decisions
    private readonly Marks _initialMarks;
    private Marks _marks;               // replaced under _lock, read lock-free
    private int _retired;               // frames out of service; guarded by _lock, read lock-free
    private int _retireDebt;            // frames still to retire as they are freed; guarded by _lock, read lock-free
    private readonly int _floor;        // the fewest frames a shrink leaves in service

    public FrameAllocator(FramePool frames, HostMemory host, int min, int low, int high)
    {
        _frames = frames;
        _host = host;
        _initialMarks = _marks = new Marks(min, low, high);
        // Hand out low frames first (stack: push high ones first). The stack is linked
        // through the frames' own metadata, so it costs no memory per frame.
        _freeHead = FrameMeta.NoFrame;
        for (int i = frames.Count - 1; i >= 0; i--) PushLocked((uint)i);
        int floor = MinFramesInService;
        while (floor < frames.Count && floor < MinFramesInService + ScaledMarks(floor).High) floor++;
        _floor = floor;
    }

    public int Min => Volatile.Read(ref _marks).Min;
    public int Low => Volatile.Read(ref _marks).Low;
    public int High => Volatile.Read(ref _marks).High;

    /// <summary>The three watermarks of one moment (a shrink replaces them together).</summary>
    public (int Min, int Low, int High) Watermarks
    {
        get
        {
            var m = Volatile.Read(ref _marks);
            return (m.Min, m.Low, m.High);
        }
    }
    public int FreeCount => Volatile.Read(ref _freeCount);

    /// <summary>Frames in service: the pool less the retired ones (free, in use, or owed to a shrink).</summary>
    public int InService => _frames.Count - Volatile.Read(ref _retired);

    /// <summary>Frames taken out of service by <see cref="Shrink"/>.</summary>
    public int Retired => Volatile.Read(ref _retired);

    /// <summary>Frames a shrink still waits to retire (the next frees go to it, not to the free list).</summary>
    public int RetireDebt => Volatile.Read(ref _retireDebt);

    /// <summary>
    /// Take <paramref name="frames"/> frames out of service: the free ones now,
    /// the rest as reclaim frees them. Never leaves fewer than
    /// <see cref="MinFramesInService"/> frames plus the (scaled) high watermark in
    /// service; a larger request is clamped (<see cref="HostShrinkResult.Clamped"/>).
    /// Wakes the background reclaimer when frames are still owed or free frames
    /// fell to the low watermark.
    /// </summary>
    public HostShrinkResult Shrink(int frames)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(frames);
        int granted, now, debt, target;
        lock (_lock)
        {
            int current = _frames.Count - _retired - _retireDebt;   // in service once the debt is paid
            granted = Math.Max(0, Math.Min(frames, current - _floor));
            target = current - granted;
            Volatile.Write(ref _marks, ScaledMarks(target));
            now = Math.Min(granted, _freeCount);
            for (int i = 0; i < now; i++) RetireLocked(PopLocked());
            _retireDebt += granted - now;
            debt = _retireDebt;
        }
        if (debt > 0 || FreeCount <= Low) _host.WakeReclaimer();
        return new HostShrinkResult(frames, granted, now, debt, target);
    }

    /// <summary>The initial watermarks scaled to <paramref name="inService"/> frames (min at least 1, min &lt;= low &lt;= high).</summary>
    private Marks ScaledMarks(int inService)
    {
        int pool = _frames.Count;
        int min = Math.Max(1, (int)((long)_initialMarks.Min * inService / pool));
        int low = Math.Max(min, (int)((long)_initialMarks.Low * inService / pool));
        int high = Math.Max(low, (int)((long)_initialMarks.High * inService / pool));
        return new Marks(min, low, high);
    }

    private void RetireLocked(uint frame)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread, "the allocator lock is held");
        Volatile.Write(ref _frames.Meta(frame).Flags, (int)FrameFlags.Retired);
        _retired++;
    }

    /// <summary>
    /// Allocate one frame with a reference count of one, zeroed unless
    /// <paramref name="zero"/> is false (the caller then overwrites every byte).
    /// </summary>
    public HostFaultStatus Allocate(bool zero, out uint frame)
    {
        HostLockDebug.AssertNoAddressSpaceLockHeld();
        int free = FreeCount;
        var marks = Volatile.Read(ref _marks);
        if (free <= marks.Low) _host.WakeReclaimer();
        if (free <= marks.Min) _host.Reclaim.DirectReclaim(marks.Min + _host.Options.ReclaimBatch - free, priority: 0);

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

        // Signal again after taking the frame: a round answering the signal above may have
        // reached high between that check and the pop, leaving high - 1 with nothing owed.
        // A signal sent now is taken after this pop, so the round it owes sees this frame gone.
        if (FreeCount <= Low) _host.WakeReclaimer();

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

    private void PushLocked(uint frame)
    {
        _frames.Meta(frame).LruNext = _freeHead;
        _freeHead = frame;
        _freeCount++;
    }

    private uint PopLocked()
    {
        Debug.Assert(_freeCount > 0 && _freeHead != FrameMeta.NoFrame, "the free stack is not empty");
        uint frame = _freeHead;
        ref FrameMeta m = ref _frames.Meta(frame);
        _freeHead = m.LruNext;
        m.LruNext = FrameMeta.NoFrame;
        _freeCount--;
        return frame;
    }

    private bool TryPop(out uint frame)
    {
        lock (_lock)
        {
            if (_freeCount == 0) { frame = FrameMeta.NoFrame; return false; }
            frame = PopLocked();
            return true;
        }
    }

    /// <summary>
    /// Return a frame whose last reference is gone; it is off every list and
    /// unmapped. It pays a shrink's debt first (retired), else it is listed free.
    /// </summary>
    public void Free(uint frame)
    {
        Prepare(frame);
        lock (_lock) FreeLocked(frame);
        Interlocked.Increment(ref _frees);
    }

    /// <summary><see cref="Free"/> for a batch (reclaim's), under one hold of the lock.</summary>
    public void FreeMany(ReadOnlySpan<uint> frames)
    {
        if (frames.IsEmpty) return;
        foreach (uint f in frames) Prepare(f);
        lock (_lock)
            foreach (uint f in frames) FreeLocked(f);
        Interlocked.Add(ref _frees, frames.Length);
    }

    private void Prepare(uint frame)
    {
        ref FrameMeta m = ref _frames.Meta(frame);
        Debug.Assert(m.RefCount == 0, "freed frames have no references");
        Debug.Assert(m.MapCount == 0, "freed frames are unmapped");
        Debug.Assert((m.Flags & (int)(FrameFlags.OnLru | FrameFlags.SwapCache | FrameFlags.Locked | FrameFlags.Free)) == 0,
            "freed frames are off the LRU, out of the swap cache and unlocked");
        m.Owner = 0;
        m.SwapSlot = FrameMeta.NoSlot;
    }

    private void FreeLocked(uint frame)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread, "the allocator lock is held");
        // Keep min frames listed while a debt is paid, so that an allocating thread's
        // direct reclaim is bounded as usual and the reclaimer pays the bulk of it.
        if (_retireDebt > 0 && _freeCount >= _marks.Min)
        {
            _retireDebt--;
            RetireLocked(frame);
        }
        else
        {
            Debug.Assert(_freeCount < _frames.Count, "no frame is freed twice");
            Volatile.Write(ref _frames.Meta(frame).Flags, (int)FrameFlags.Free);
            PushLocked(frame);
        }
    }
}
