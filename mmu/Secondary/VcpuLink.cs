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
/// The seam between one vCPU and the secondary MMU: the vCPU's mode and its
/// pending requests. The secondary MMU asks for TLB flushes here and waits for
/// the acknowledgement of every vCPU that is in guest mode.
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
/// acknowledgement, or the vCPU sees the request and flushes before it touches
/// guest memory.
/// </remarks>
public sealed class VcpuLink
{
    public const int FlushRequest = 1;
    public const int StopRequest = 2;

    private int _mode;          // VcpuMode; written by the vCPU thread only.
    private int _requests;      // bit set of *Request; set by anyone, cleared by the vCPU.
    private long _flushAcks;    // incremented by the vCPU after each flush it performs.
    private long _entries;      // incremented by the vCPU each time it enters guest mode.
    private int _waiters;       // invalidators blocked in WaitForFlush; the vCPU wakes them.
    private readonly SemaphoreSlim _wake = new(0);

    public VcpuLink(int index) => Index = index;

    public int Index { get; }

    public VcpuMode Mode => (VcpuMode)Volatile.Read(ref _mode);

    /// <summary>True when any request is pending; the vCPU polls this at block boundaries.</summary>
    public bool HasRequests => Volatile.Read(ref _requests) != 0;

    public long FlushAcks => Volatile.Read(ref _flushAcks);

    /// <summary>Times the vCPU has entered guest mode (a vCPU that re-entered took its requests before touching memory).</summary>
    public long GuestEntries => Volatile.Read(ref _entries);

    /// <summary>
    /// vCPU thread: enter guest mode. The caller must call <see cref="TakeRequests"/>
    /// afterwards and act on it before touching guest memory through its TLB.
    /// </summary>
    public void EnterGuest()
    {
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

    /// <summary>vCPU thread: the TLB has been flushed in answer to a request.</summary>
    public void AcknowledgeFlush()
    {
        Interlocked.Increment(ref _flushAcks);   // full fence; pairs with the waiter's _waiters increment
        WakeWaiters();
    }

    private void WakeWaiters()
    {
        if (Volatile.Read(ref _waiters) != 0) _wake.Release();
    }

    /// <summary>Any thread: ask the vCPU to stop at its next block boundary.</summary>
    public void RequestStop() => Interlocked.Or(ref _requests, StopRequest);

    /// <summary>
    /// Any thread: ask the vCPU to flush its TLB. Returns a ticket to pass to
    /// <see cref="WaitForFlush"/>, or -1 when the vCPU was not in guest mode
    /// (it will see the request when it next enters, so nobody needs to wait).
    /// </summary>
    public long RequestFlush()
    {
        long acks = Volatile.Read(ref _flushAcks);
        Interlocked.Or(ref _requests, FlushRequest);   // full fence; pairs with EnterGuest
        return Mode == VcpuMode.InGuest ? acks : -1;
    }

    /// <summary>
    /// Wait until the vCPU has flushed after <paramref name="ticket"/> or has left
    /// guest mode (a vCPU outside guest mode holds no live TLB entry).
    /// </summary>
    public void WaitForFlush(long ticket)
    {
        if (ticket < 0) return;
        // Spin first: a running vCPU answers within a block.
        for (int i = 0; i < 64; i++)
        {
            if (Volatile.Read(ref _flushAcks) != ticket || Mode != VcpuMode.InGuest) return;
            Thread.SpinWait(20);
        }
        // Then block, so that with more runnable threads than cores the waiter gives
        // its core to the very vCPU it waits for; the acknowledgement (or ExitGuest)
        // wakes it. The timeout only bounds a wake-up lost to a stale semaphore count.
        Interlocked.Increment(ref _waiters);
        try
        {
            while (Volatile.Read(ref _flushAcks) == ticket && Mode == VcpuMode.InGuest)
                _wake.Wait(1);
        }
        finally { Interlocked.Decrement(ref _waiters); }
    }
}
