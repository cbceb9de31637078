using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

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
///   Requests |= Flush    (interlocked)  Mode = InGuest      (interlocked)
///   read Mode                           read Requests
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

    /// <summary>
    /// The fields a flush's round trip touches, in two groups of cache lines kept apart: what the
    /// posters write and the vCPU reads at every block (<see cref="Shared.Requests"/> and the
    /// post), and what the vCPU writes and the posters read (its mode and acknowledgement). A post
    /// then costs one line's transfer to the vCPU and its answer one line's transfer back; with the
    /// fields spread over the object and a separate lock and range array, as before, each round
    /// trip moved half a dozen lines between the cores, a few hundred nanoseconds apiece on a
    /// host whose cores trade a line in about 130 ns each way (bench/RESULTS.md).
    /// </summary>
    private Shared _lines = new() { PinnedCpu = -1 };
    private long _remoteGen;    // written by invalidators under the MMU lock, read by the checker
    private long _yields;       // incremented by the vCPU each time it yields on request.
    private readonly SemaphoreSlim _wake = new(0);
    private IVcpuTlb? _tlb;

    /// <summary>A posted range of guest frames.</summary>
    private struct PendingRange
    {
        public ulong First, Last;
    }

    [InlineArray(MaxPendingRanges)]
    private struct PendingRanges
    {
        private PendingRange _first;
    }

    /// <remarks>
    /// The object and so this struct are only 8-byte aligned: 64 bytes of padding before, between
    /// and after the two groups keep any line from holding fields of both, or of other objects.
    /// </remarks>
    [StructLayout(LayoutKind.Explicit, Size = 432)]
    private struct Shared
    {
        // Written by posters (and cleared by the vCPU as it takes them); read by the vCPU.
        [FieldOffset(64)] public int Requests;   // bit set of *Request; set by anyone, cleared by the vCPU
        [FieldOffset(68)] public int PostLock;   // 1 while a poster or the vCPU's take holds the post below
        [FieldOffset(72)] public long PostedGen; // guarded by PostLock
        [FieldOffset(80)] public int PendingCount;   // guarded by PostLock
        [FieldOffset(84)] public bool PendingAll;    // guarded by PostLock
        [FieldOffset(88)] public int TlbPins;        // invalidators and checkers using the TLB; detach waits for 0
        [FieldOffset(96)] public PendingRanges Pending;   // guarded by PostLock; 128 bytes
        // Written by the vCPU; read by posters and waiters.
        [FieldOffset(288)] public int Mode;        // VcpuMode
        [FieldOffset(292)] public int ThreadId;    // the managed thread that last entered guest mode
        [FieldOffset(296)] public long FlushedGen; // the newest generation acknowledged
        [FieldOffset(304)] public long FlushAcks;  // flushes performed
        [FieldOffset(312)] public long Entries;    // guest-mode entries
        [FieldOffset(320)] public long TakenGen;   // vCPU thread only: generation of the ranges taken, not yet acknowledged
        [FieldOffset(328)] public bool Taken;      // vCPU thread only
        [FieldOffset(332)] public int Waiters;     // invalidators blocked in WaitForFlush (they write it only to block); the vCPU reads it after each ack
        [FieldOffset(336)] public int PinnedCpu;   // the one CPU the vCPU thread may run on, -1 when not pinned
    }

    /// <summary>Take the post (posters, and the vCPU's take): held for a few stores at a time.</summary>
    private void EnterPost()
    {
        if (Interlocked.CompareExchange(ref _lines.PostLock, 1, 0) == 0) return;
        var spin = new SpinWait();
        do spin.SpinOnce(); while (Volatile.Read(ref _lines.PostLock) != 0 || Interlocked.CompareExchange(ref _lines.PostLock, 1, 0) != 0);
    }

    private void ExitPost() => Volatile.Write(ref _lines.PostLock, 0);

    public VcpuLink(int index) => Index = index;

    public int Index { get; }

    public VcpuMode Mode => (VcpuMode)Volatile.Read(ref _lines.Mode);

    /// <summary>The managed thread id of the vCPU's thread (0 before it first entered guest mode); lets the checker name vCPUs.</summary>
    public int ThreadId => Volatile.Read(ref _lines.ThreadId);

    /// <summary>True when any request is pending; the vCPU polls this at block boundaries.</summary>
    public bool HasRequests => Volatile.Read(ref _lines.Requests) != 0;

    /// <summary>Flushes the vCPU has performed in answer to requests.</summary>
    public long FlushAcks => Volatile.Read(ref _lines.FlushAcks);

    /// <summary>Newest flush generation posted.</summary>
    public long PostedGeneration
    {
        get
        {
            EnterPost();
            try { return _lines.PostedGen; }
            finally { ExitPost(); }
        }
    }

    /// <summary>Newest generation the vCPU has flushed and acknowledged.</summary>
    public long FlushedGeneration => Volatile.Read(ref _lines.FlushedGen);

    /// <summary>Newest generation an invalidator completed without the vCPU (its TLB could not hold the range, or was shot down while quiescent).</summary>
    public long RemoteGeneration => Volatile.Read(ref _remoteGen);

    /// <summary>Times the vCPU has entered guest mode (a vCPU that re-entered took its requests before touching memory).</summary>
    public long GuestEntries => Volatile.Read(ref _lines.Entries);

    /// <summary>
    /// The one CPU the vCPU's thread is allowed to run on (it pinned itself with
    /// <c>sched_setaffinity</c>), or -1 when it is not pinned. A shootdown orders a pinned vCPU
    /// with a barrier aimed at that CPU alone (<see cref="TargetedBarrier"/>), and knows that a
    /// vCPU pinned to the CPU the invalidator runs on is not running now
    /// (mmu/LOCKING.md "The barrier aimed at a pinned vCPU's CPU").
    /// </summary>
    public int PinnedCpu => Volatile.Read(ref _lines.PinnedCpu);

    /// <summary>
    /// vCPU thread: its thread now runs on <paramref name="cpu"/> only (before it first enters
    /// guest mode), or -1: it no longer may be assumed to (its affinity was changed from outside),
    /// so shootdowns go back to the process-wide barrier for it.
    /// </summary>
    public void SetPinnedCpu(int cpu)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(cpu, -1);
        Volatile.Write(ref _lines.PinnedCpu, cpu);
    }

    /// <summary>vCPU: attach the TLB that invalidators may inspect and shoot down from outside.</summary>
    public void AttachTlb(IVcpuTlb tlb) => Volatile.Write(ref _tlb, tlb);

    /// <summary>vCPU: detach it before its memory goes away; waits for every user to finish.</summary>
    public void DetachTlb()
    {
        Volatile.Write(ref _tlb, null);
        var spin = new SpinWait();
        while (Volatile.Read(ref _lines.TlbPins) != 0) spin.SpinOnce();
    }

    /// <summary>Use the attached TLB from another thread; pair with <see cref="UnpinTlb"/>. Null when none.</summary>
    public IVcpuTlb? PinTlb()
    {
        Interlocked.Increment(ref _lines.TlbPins);   // full fence; pairs with DetachTlb's write then read
        var tlb = Volatile.Read(ref _tlb);
        if (tlb is null) Interlocked.Decrement(ref _lines.TlbPins);
        return tlb;
    }

    public void UnpinTlb() => Interlocked.Decrement(ref _lines.TlbPins);

    /// <summary>
    /// vCPU thread: enter guest mode. The caller must call <see cref="TakeRequests"/>
    /// afterwards and act on it before touching guest memory through its TLB.
    /// </summary>
    public void EnterGuest()
    {
        int thread = Environment.CurrentManagedThreadId;
        if (_lines.ThreadId != thread) Volatile.Write(ref _lines.ThreadId, thread);
        Volatile.Write(ref _lines.Entries, _lines.Entries + 1);
        Interlocked.Exchange(ref _lines.Mode, (int)VcpuMode.InGuest);
    }

    /// <summary>vCPU thread: leave guest mode before anything that can block.</summary>
    public void ExitGuest()
    {
        Interlocked.Exchange(ref _lines.Mode, (int)VcpuMode.OutsideGuest);
        WakeWaiters();
    }

    /// <summary>vCPU thread: take and clear all pending requests.</summary>
    public int TakeRequests() => Interlocked.Exchange(ref _lines.Requests, 0);

    /// <summary>
    /// vCPU thread, after <see cref="TakeRequests"/> returned <see cref="FlushRequest"/>:
    /// take the ranges posted so far into <paramref name="ranges"/>. Returns the number
    /// taken, or -1 when the whole TLB must go. Acknowledge once they are flushed.
    /// </summary>
    public int TakeFlushRanges(Span<(ulong First, ulong Last)> ranges)
    {
        EnterPost();
        try
        {
            _lines.TakenGen = _lines.PostedGen;
            _lines.Taken = true;
            int n = _lines.PendingAll || ranges.Length < _lines.PendingCount ? -1 : _lines.PendingCount;
            for (int i = 0; i < n; i++) ranges[i] = (_lines.Pending[i].First, _lines.Pending[i].Last);
            _lines.PendingCount = 0;
            _lines.PendingAll = false;
            return n;
        }
        finally { ExitPost(); }
    }

    /// <summary>
    /// vCPU thread: the flush is done. Without a preceding <see cref="TakeFlushRanges"/>
    /// (a caller that caches no translation) everything posted so far is acknowledged.
    /// </summary>
    public void AcknowledgeFlush()
    {
        if (!_lines.Taken) TakeFlushRanges([]);
        _lines.Taken = false;
        Volatile.Write(ref _lines.FlushedGen, _lines.TakenGen);
        Interlocked.Increment(ref _lines.FlushAcks);   // full fence; pairs with the waiter's _waiters increment
        WakeWaiters();
    }

    private void WakeWaiters()
    {
        if (Volatile.Read(ref _lines.Waiters) != 0) _wake.Release();
    }

    /// <summary>Any thread: ask the vCPU to stop at its next block boundary.</summary>
    public void RequestStop() => Interlocked.Or(ref _lines.Requests, StopRequest);

    /// <summary>Any thread: ask the vCPU to yield its core once at its next boundary (<see cref="YieldRequest"/>).</summary>
    public void RequestYield() => Interlocked.Or(ref _lines.Requests, YieldRequest);

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
        EnterPost();
        try
        {
            gen = ++_lines.PostedGen;
            if (firstGfn == 0 && lastGfn == ulong.MaxValue || _lines.PendingCount == MaxPendingRanges) _lines.PendingAll = true;
            else if (!_lines.PendingAll) _lines.Pending[_lines.PendingCount++] = new PendingRange { First = firstGfn, Last = lastGfn };
        }
        finally { ExitPost(); }
        Interlocked.Or(ref _lines.Requests, FlushRequest);   // full fence; pairs with EnterGuest
        return Mode == VcpuMode.InGuest ? gen : -1;
    }

    /// <summary>True when the post of <paramref name="ticket"/> needs no more waiting.</summary>
    public bool IsFlushed(long ticket) =>
        ticket < 0 || Volatile.Read(ref _lines.FlushedGen) >= ticket || Mode != VcpuMode.InGuest;

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
        Interlocked.Increment(ref _lines.Waiters);
        try
        {
            while (!IsFlushed(ticket)) _wake.Wait(1);
        }
        finally { Interlocked.Decrement(ref _lines.Waiters); }
    }
}
