using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ToyVmm.Cpu;

// Bounded code-cache memory: slots, free lists, grace periods and the cap.
//
// Blocks live in 1 MiB chunks, in slots of a size class (ops rounded up to a multiple of 4).
// A retired block (invalidated or flushed) may still be referenced by a vCPU: one executing
// it (it leaves at its next op, which is a bail-out), or a jump-cache entry (Exec.Chain and
// FindBlock check Valid, which reads the slot). Its slot is reused only after a grace period:
//
//   reclaimer (under _lock)                    vCPU (its own thread, no lock)
//   retire: Valid = 0, ops bail out,           at every block boundary (Execute; CurOp null):
//     out of the table                           e = *CodeEpochNow
//   waiting = retired; epoch++ (interlocked,     if e != CodeEpochSeen: clear the jump cache
//     full fence)                                CodeAck = e
//   every CodeAck >= epoch? slots -> free list Run entry: CodeAck = CodeEpochSeen; full fence;
//                                                then as above. Run exit: CodeAck = Offline
//
// A vCPU that published CodeAck >= E has cleared its jump cache after the bump to E and is
// between blocks: it cannot reach a block retired before the bump again (the table no longer
// has it). A vCPU outside Run (Offline) counts as acknowledged: on entry it stores its old
// acknowledgement, fences, and reads the epoch; the reclaimer bumps (fence) and then reads the
// acknowledgements, so either the reclaimer sees the old value and waits, or the vCPU sees the
// new epoch and clears its jump cache before it looks at any block.
//
// A vCPU inside a host call (port I/O, hypercall) is inside a block and holds the grace period
// back; the decoding vCPU acknowledges for itself (it is between blocks), so with one vCPU a
// grace period ends at the allocation that needs it.
//
// The TLB shootdown reads another vCPU's CurBlock and the slot's quiet bits (IsQuiescent): a
// slot's Seq changes (interlocked) before it is reused, and the reader re-checks CurOp,
// CurBlock and Seq after reading the bits. Chunks stay mapped for the cache's life, so such a
// read never faults.
internal sealed unsafe partial class CodeCache
{
    /// <summary>
    /// Default arena cap. The shipped guests decode well under 1 MiB of blocks (a block is
    /// 128 bytes plus 32 per instruction); 32 MiB holds about a million decoded instructions
    /// while keeping a guest that generates code forever at a fixed, small cost to the host.
    /// </summary>
    public const long DefaultCapBytes = 32L << 20;

    /// <summary>CpuState.CodeAck of a vCPU outside Run: it holds no block.</summary>
    public const long Offline = long.MaxValue;

    private const int ChunkBytes = 1 << 20;
    private const int OpsPerClass = 4;
    private const int Classes = (Vcpu.MaxOpsPerBlock + 1 + OpsPerClass - 1) / OpsPerClass;

    private readonly long* _epochCell;                   // the grace-period epoch; written under _lock (interlocked), read racily by vCPUs
    private readonly List<nint> _chunks = new();         // guarded by _lock; every chunk ever allocated (freed by the finalizer)
    private int _chunkIndex = -1;                        // guarded by _lock; the chunk being carved
    private byte* _bump;                                 // guarded by _lock
    private nuint _bumpLeft;                             // guarded by _lock
    private readonly nint[] _free = new nint[Classes + 1];   // guarded by _lock; free slots per class, linked through HashNext
    private List<nint> _retired = new();                 // guarded by _lock; retired since the last bump
    private List<nint> _waiting = new();                 // guarded by _lock; retired before the bump to _waitingEpoch
    private long _waitingEpoch;                          // guarded by _lock
    private readonly List<nint> _vcpus = new();          // guarded by _lock; CpuState* of the registered vCPUs

    private long _liveBlocks, _liveBytes, _retiredBytes, _peakArenaBytes;   // guarded by _lock
    private long _blocksFreed, _gracePeriods;                                // guarded by _lock
    private long _capBytes = DefaultCapBytes;                                // guarded by _lock
    /// <summary>Flushes done because the arena reached its cap.</summary>
    public long Flushes;                                                     // guarded by _lock

    /// <summary>Arena cap in bytes (tests lower it; at least one chunk).</summary>
    public long CapBytes
    {
        get { lock (_lock) return _capBytes; }
        set { lock (_lock) _capBytes = Math.Max(ChunkBytes, value); }
    }

    /// <summary>A consistent snapshot of the counters.</summary>
    public CodeCacheStats Stats
    {
        get
        {
            lock (_lock)
                return new CodeCacheStats(_liveBlocks, _liveBytes, _retired.Count + _waiting.Count, _retiredBytes,
                    (long)_chunks.Count * ChunkBytes, _peakArenaBytes, _capBytes, BlocksDecoded, BlocksInvalidated,
                    _blocksFreed, Flushes, _gracePeriods);
        }
    }

    private static int ClassOf(int ops) => (ops + OpsPerClass - 1) / OpsPerClass;

    private static long SlotBytes(int cls) => Block.HeaderSize + cls * OpsPerClass * sizeof(Op);

    /// <summary>Joins the grace periods; <paramref name="s"/> starts outside Run (Offline).</summary>
    public void Register(CpuState* s)
    {
        lock (_lock)
        {
            s->CodeEpochNow = _epochCell;
            s->CodeEpochSeen = Volatile.Read(ref *_epochCell);
            s->CodeAck = Offline;
            _vcpus.Add((nint)s);
        }
    }

    /// <summary>Leaves the grace periods (before <paramref name="s"/> is freed).</summary>
    public void Unregister(CpuState* s)
    {
        lock (_lock) _vcpus.Remove((nint)s);
    }

    /// <summary>
    /// vCPU thread, between blocks (CurOp null): stop referencing blocks retired before the
    /// current epoch (clear the jump cache when it moved) and say so.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Acknowledge(CpuState* s)
    {
        long e = Volatile.Read(ref *s->CodeEpochNow);
        if (e != s->CodeEpochSeen)
        {
            JumpEntry* j = s->Jump;
            for (int i = 0; i < Vcpu.JumpSize; i++) { j[i].Tag = TlbEntry.Invalid; j[i].Block = null; }
            s->CodeEpochSeen = e;
        }
        Volatile.Write(ref s->CodeAck, e);
    }

    /// <summary>vCPU thread, entering Run: back in the grace periods (pairs with the bump's fence in ReclaimLocked).</summary>
    public static void Enter(CpuState* s)
    {
        Volatile.Write(ref s->CodeAck, s->CodeEpochSeen);
        Interlocked.MemoryBarrier();
        Acknowledge(s);
    }

    /// <summary>vCPU thread, leaving Run (between blocks): holds no block until it enters again.</summary>
    public static void Leave(CpuState* s) => Volatile.Write(ref s->CodeAck, Offline);

    /// <summary>A slot for a block of <paramref name="ops"/> ops; reuses, grows, or flushes at the cap.</summary>
    private Block* AllocateLocked(CpuState* decoder, int ops)
    {
        Debug.Assert(Monitor.IsEntered(_lock));
        int cls = ClassOf(ops);
        Block* b = PopFreeLocked(cls, cls);
        if (b == null && _retiredBytes > 0)
        {
            ReclaimLocked(decoder);
            b = PopFreeLocked(cls, cls);
        }
        b = b != null ? b : BumpLocked(cls, grow: (long)(_chunkIndex + 2) * ChunkBytes <= _capBytes);
        if (b == null) b = PopFreeLocked(cls, Classes);   // at the cap: a larger free slot will do
        if (b == null)
        {
            // At the cap with no slot: retire everything. With every vCPU acknowledged (always
            // with one vCPU) the whole arena is free again; otherwise grow past the cap until
            // the others pass a block boundary.
            FlushLocked();
            ReclaimLocked(decoder);
            if (_liveBlocks == 0 && _retiredBytes == 0) ResetArenaLocked();
            b = PopFreeLocked(cls, Classes);
            b = b != null ? b : BumpLocked(cls, grow: true);
        }
        // Before the new contents: IsQuiescent re-reads Seq after reading a slot (pairs with that read).
        Interlocked.Increment(ref b->Seq);
        return b;
    }

    private Block* PopFreeLocked(int from, int to)
    {
        for (int c = from; c <= to; c++)
        {
            var b = (Block*)_free[c];
            if (b == null) continue;
            _free[c] = (nint)b->HashNext;
            return b;
        }
        return null;
    }

    private Block* BumpLocked(int cls, bool grow)
    {
        nuint size = (nuint)SlotBytes(cls);
        if (_bumpLeft < size)
        {
            if (_chunkIndex + 1 >= _chunks.Count)
            {
                if (!grow) return null;
                _chunks.Add((nint)NativeMemory.AlignedAlloc(ChunkBytes, 64));
                _peakArenaBytes = Math.Max(_peakArenaBytes, (long)_chunks.Count * ChunkBytes);
            }
            _chunkIndex++;
            _bump = (byte*)_chunks[_chunkIndex];
            _bumpLeft = ChunkBytes;
        }
        var b = (Block*)_bump;
        _bump += size;
        _bumpLeft -= size;
        b->Seq = 0;
        b->Class = cls;   // a slot keeps its class for its life (a larger free slot may serve a smaller block)
        return b;
    }

    /// <summary>No block is live or retired: every chunk is free space again; carve from the first.</summary>
    private void ResetArenaLocked()
    {
        // Chunks stay allocated, past the cap too (grown while a grace period was pending):
        // an IsQuiescent on another thread may still read a slot it saw before the reset.
        Array.Clear(_free);
        _chunkIndex = -1;
        _bumpLeft = 0;
    }

    /// <summary>
    /// Ends the pending grace period if every vCPU has acknowledged it, then starts one for
    /// the blocks retired since. <paramref name="self"/> (may be null) is the calling vCPU,
    /// between blocks: it acknowledges for itself.
    /// </summary>
    private void ReclaimLocked(CpuState* self)
    {
        Debug.Assert(Monitor.IsEntered(_lock));
        if (self != null) Acknowledge(self);
        if (_waiting.Count > 0 && AllAcknowledgedLocked(_waitingEpoch)) FreeWaitingLocked();
        if (_waiting.Count > 0 || _retired.Count == 0) return;
        (_waiting, _retired) = (_retired, _waiting);
        // Full fence: the bump before reading the acknowledgements (pairs with Enter's fence).
        _waitingEpoch = Interlocked.Increment(ref *_epochCell);
        if (self != null) Acknowledge(self);
        if (AllAcknowledgedLocked(_waitingEpoch)) FreeWaitingLocked();
    }

    private bool AllAcknowledgedLocked(long epoch)
    {
        foreach (nint p in _vcpus)
            if (Volatile.Read(ref ((CpuState*)p)->CodeAck) < epoch) return false;
        return true;
    }

    private void FreeWaitingLocked()
    {
        foreach (nint p in _waiting)
        {
            var b = (Block*)p;
            Interlocked.Increment(ref b->Seq);   // a concurrent IsQuiescent sees the slot change
            OnSlotFreedLocked(b);
            b->HashNext = (Block*)_free[b->Class];
            _free[b->Class] = p;
            _retiredBytes -= SlotBytes(b->Class);
            _blocksFreed++;
        }
        _waiting.Clear();
        _gracePeriods++;
    }
}
