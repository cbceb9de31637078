namespace ToyVmm.Mmu.Secondary;

/// <summary>Where a vCPU stands with respect to guest memory (KVM's <c>vcpu->mode</c>).</summary>
public enum VcpuMode
{
    /// <summary>Not executing guest instructions; its software TLB is not in use.</summary>
    OutsideGuest = 0,
    /// <summary>Executing guest instructions with its software TLB live.</summary>
    InGuest = 1,
}

/// <summary>
/// The seam between one vCPU and the secondary MMU: the vCPU's mode, its
/// pending requests and the guest-frame ranges it has been asked to flush.
/// The secondary MMU posts flushes here and waits until each one is done:
/// acknowledged by the vCPU, or completed from outside (<see cref="CompleteRemotely"/>).
/// </summary>
/// <remarks>
/// Ordering (a Dekker pair, as in KVM's <c>kvm_make_all_cpus_request</c> against
/// <c>vcpu_enter_guest</c>):
/// <code>
///   invalidator                        vCPU
///   _requests |= Flush   (interlocked)  _mode = InGuest     (interlocked)
///   read _mode                          read _requests
/// </code>
/// Both sides write then read with a full fence between, so at least one side
/// sees the other: either the invalidator sees InGuest and waits for the
/// flush, or the vCPU sees the request and flushes before it touches guest memory.
/// <para>
/// Flushes are numbered. <see cref="RequestFlush(ulong, ulong)"/> returns the
/// generation of its post; the vCPU takes every range posted so far together
/// with the newest generation, flushes them, and publishes that generation as
/// flushed. A waiter is done when the flushed generation reaches its own: an
/// acknowledgement of an earlier take never answers a later post.
/// </para>
/// </remarks>
public sealed class VcpuLink
{
    public const int FlushRequest = 1;
    public const int StopRequest = 2;
    /// <summary>
    /// Give up the core once (sched_yield): an invalidator waiting for another vCPU that
    /// the host has descheduled asks the running ones, so that the stalled vCPU, queued
    /// behind one of them, runs and acknowledges (KVM's directed yield, asked for).
    /// </summary>
    public const int YieldRequest = 4;
    /// <summary>Ranges kept per vCPU before a post degrades to a whole-TLB flush.</summary>
    public const int MaxPendingRanges = 8;

    private int _mode;          // VcpuMode; written by the vCPU thread only.
    private int _threadId;      // the managed thread that last entered guest mode; written by it only.
    private int _requests;      // bit set of *Request; set by anyone, cleared by the vCPU.
    private long _flushAcks;    // incremented by the vCPU after each flush it performs.
    private long _yields;       // incremented by the vCPU each time it yields on request.
    private long _entries;      // incremented by the vCPU each time it enters guest mode.
    private int _waiters;       // invalidators blocked in WaitForFlush; the vCPU wakes them.
    private readonly SemaphoreSlim _wake = new(0);

    // Posted flushes: guarded by _postLock (posters and the vCPU's take).
    private readonly Lock _postLock = new();
    private readonly (ulong First, ulong Last)[] _pending = new (ulong, ulong)[MaxPendingRanges];
    private int _pendingCount;
    private bool _pendingAll;
    private long _postedGen;
    private long _flushedGen;   // written by the vCPU (acknowledge), read by waiters
    private long _remoteGen;    // written by invalidators under the MMU lock, read by the checker
    private long _takenGen;     // vCPU thread only: generation of the ranges taken, not yet acknowledged
    private bool _taken;        // vCPU thread only

    private IVcpuTlb? _tlb;
    private int _tlbPins;       // invalidators and checkers using _tlb; detach waits for 0
    private int _pinnedCpu = -1; // the one CPU the vCPU thread may run on, -1 when not pinned; written by the vCPU thread only

    public VcpuLink(int index) => Index = index;

    public int Index { get; }

    public VcpuMode Mode => (VcpuMode)Volatile.Read(ref _mode);

    /// <summary>The managed thread id of the vCPU's thread (0 before it first entered guest mode); lets the checker name vCPUs.</summary>
    public int ThreadId => Volatile.Read(ref _threadId);

    /// <summary>True when any request is pending; the vCPU polls this at block boundaries.</summary>
    public bool HasRequests => Volatile.Read(ref _requests) != 0;

    /// <summary>Flushes the vCPU has performed in answer to requests.</summary>
    public long FlushAcks => Volatile.Read(ref _flushAcks);

    /// <summary>Newest flush generation posted.</summary>
    public long PostedGeneration { get { lock (_postLock) return _postedGen; } }

    /// <summary>Newest generation the vCPU has flushed and acknowledged.</summary>
    public long FlushedGeneration => Volatile.Read(ref _flushedGen);

    /// <summary>Newest generation an invalidator completed without the vCPU (its TLB could not hold the range, or was shot down while quiescent).</summary>
    public long RemoteGeneration => Volatile.Read(ref _remoteGen);

    /// <summary>Times the vCPU has entered guest mode (a vCPU that re-entered took its requests before touching memory).</summary>
    public long GuestEntries => Volatile.Read(ref _entries);

    /// <summary>
    /// The one CPU the vCPU's thread is allowed to run on (it pinned itself with
    /// <c>sched_setaffinity</c>), or -1 when it is not pinned. A shootdown orders a pinned vCPU
    /// with a barrier aimed at that CPU alone (<see cref="TargetedBarrier"/>), and knows that a
    /// vCPU pinned to the CPU the invalidator runs on is not running now
    /// (mmu/LOCKING.md "The barrier aimed at a pinned vCPU's CPU").
    /// </summary>
    public int PinnedCpu => Volatile.Read(ref _pinnedCpu);

    /// <summary>
    /// vCPU thread: its thread now runs on <paramref name="cpu"/> only (before it first enters
    /// guest mode), or -1: it no longer may be assumed to (its affinity was changed from outside),
    /// so shootdowns go back to the process-wide barrier for it.
    /// </summary>
    public void SetPinnedCpu(int cpu)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(cpu, -1);
        Volatile.Write(ref _pinnedCpu, cpu);
    }

    /// <summary>vCPU: attach the TLB that invalidators may inspect and shoot down from outside.</summary>
    public void AttachTlb(IVcpuTlb tlb) => Volatile.Write(ref _tlb, tlb);

    /// <summary>vCPU: detach it before its memory goes away; waits for every user to finish.</summary>
    public void DetachTlb()
    {
        Volatile.Write(ref _tlb, null);
        var spin = new SpinWait();
        while (Volatile.Read(ref _tlbPins) != 0) spin.SpinOnce();
    }

    /// <summary>Use the attached TLB from another thread; pair with <see cref="UnpinTlb"/>. Null when none.</summary>
    public IVcpuTlb? PinTlb()
    {
        Interlocked.Increment(ref _tlbPins);   // full fence; pairs with DetachTlb's write then read
        var tlb = Volatile.Read(ref _tlb);
        if (tlb is null) Interlocked.Decrement(ref _tlbPins);
        return tlb;
    }

    public void UnpinTlb() => Interlocked.Decrement(ref _tlbPins);

    /// <summary>
    /// vCPU thread: enter guest mode. The caller must call <see cref="TakeRequests"/>
    /// afterwards and act on it before touching guest memory through its TLB.
    /// </summary>
    public void EnterGuest()
    {
        int thread = Environment.CurrentManagedThreadId;
        if (_threadId != thread) Volatile.Write(ref _threadId, thread);
        Volatile.Write(ref _entries, _entries + 1);
        Interlocked.Exchange(ref _mode, (int)VcpuMode.InGuest);
    }

    /// <summary>vCPU thread: leave guest mode before anything that can block.</summary>
    public void ExitGuest()
    {
        Interlocked.Exchange(ref _mode, (int)VcpuMode.OutsideGuest);
        WakeWaiters();
    }

    /// <summary>vCPU thread: take and clear all pending requests.</summary>
    public int TakeRequests() => Interlocked.Exchange(ref _requests, 0);

    /// <summary>
    /// vCPU thread, after <see cref="TakeRequests"/> returned <see cref="FlushRequest"/>:
    /// take the ranges posted so far into <paramref name="ranges"/>. Returns the number
    /// taken, or -1 when the whole TLB must go. Acknowledge once they are flushed.
    /// </summary>
    public int TakeFlushRanges(Span<(ulong First, ulong Last)> ranges)
    {
        lock (_postLock)
        {
            _takenGen = _postedGen;
            _taken = true;
            int n = _pendingAll || ranges.Length < _pendingCount ? -1 : _pendingCount;
            if (n > 0) _pending.AsSpan(0, n).CopyTo(ranges);
            _pendingCount = 0;
            _pendingAll = false;
            return n;
        }
    }

    /// <summary>
    /// vCPU thread: the flush is done. Without a preceding <see cref="TakeFlushRanges"/>
    /// (a caller that caches no translation) everything posted so far is acknowledged.
    /// </summary>
    public void AcknowledgeFlush()
    {
        if (!_taken) TakeFlushRanges([]);
        _taken = false;
        Volatile.Write(ref _flushedGen, _takenGen);
        Interlocked.Increment(ref _flushAcks);   // full fence; pairs with the waiter's _waiters increment
        WakeWaiters();
    }

    private void WakeWaiters()
    {
        if (Volatile.Read(ref _waiters) != 0) _wake.Release();
    }

    /// <summary>Any thread: ask the vCPU to stop at its next block boundary.</summary>
    public void RequestStop() => Interlocked.Or(ref _requests, StopRequest);

    /// <summary>Any thread: ask the vCPU to yield its core once at its next boundary (<see cref="YieldRequest"/>).</summary>
    public void RequestYield() => Interlocked.Or(ref _requests, YieldRequest);

    /// <summary>Yield requests the vCPU has carried out.</summary>
    public long Yields => Volatile.Read(ref _yields);

    /// <summary>vCPU thread, after <see cref="TakeRequests"/> returned <see cref="YieldRequest"/>: give up the core once.</summary>
    public void YieldCore()
    {
        Interlocked.Increment(ref _yields);
        Thread.Yield();
    }

    /// <summary>Any thread: ask the vCPU to flush its whole TLB. See <see cref="RequestFlush(ulong, ulong)"/>.</summary>
    public long RequestFlush() => RequestFlush(0, ulong.MaxValue);

    /// <summary>
    /// Any thread: ask the vCPU to drop its translations of guest frames
    /// [<paramref name="firstGfn"/>, <paramref name="lastGfn"/>]. Returns the
    /// generation to wait for, or -1 when the vCPU was not in guest mode (it takes
    /// the request when it next enters, so nobody needs to wait).
    /// </summary>
    public long RequestFlush(ulong firstGfn, ulong lastGfn)
    {
        long gen;
        lock (_postLock)
        {
            gen = ++_postedGen;
            if (firstGfn == 0 && lastGfn == ulong.MaxValue || _pendingCount == MaxPendingRanges) _pendingAll = true;
            else if (!_pendingAll) _pending[_pendingCount++] = (firstGfn, lastGfn);
        }
        Interlocked.Or(ref _requests, FlushRequest);   // full fence; pairs with EnterGuest
        return Mode == VcpuMode.InGuest ? gen : -1;
    }

    /// <summary>True when the post of <paramref name="ticket"/> needs no more waiting.</summary>
    public bool IsFlushed(long ticket) =>
        ticket < 0 || Volatile.Read(ref _flushedGen) >= ticket || Mode != VcpuMode.InGuest;

    /// <summary>
    /// Invalidator, under the secondary MMU's lock: the post of <paramref name="ticket"/>
    /// was completed without the vCPU (the checker counts it as flushed).
    /// </summary>
    public void CompleteRemotely(long ticket)
    {
        if (ticket > Volatile.Read(ref _remoteGen)) Volatile.Write(ref _remoteGen, ticket);
    }

    /// <summary>
    /// Wait until the vCPU has flushed the post of <paramref name="ticket"/> or has
    /// left guest mode (a vCPU outside guest mode holds no live TLB entry).
    /// <paramref name="spin"/> false: the vCPU is known not to be running, so block at once.
    /// </summary>
    public void WaitForFlush(long ticket, bool spin = true)
    {
        if (IsFlushed(ticket)) return;
        // Spin first: a running vCPU answers within a block.
        for (int i = 0; spin && i < 64; i++)
        {
            Thread.SpinWait(20);
            if (IsFlushed(ticket)) return;
        }
        // Then block, so that with more runnable threads than cores the waiter gives
        // its core to the very vCPU it waits for; the acknowledgement (or ExitGuest)
        // wakes it. The timeout only bounds a wake-up lost to a stale semaphore count.
        Interlocked.Increment(ref _waiters);
        try
        {
            while (!IsFlushed(ticket)) _wake.Wait(1);
        }
        finally { Interlocked.Decrement(ref _waiters); }
    }
}
