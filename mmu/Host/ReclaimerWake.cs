namespace ToyVmm.Mmu.Host;

// Lock order: _gate is a leaf, held only to pulse or to enter Monitor.Wait; nothing is
// taken under it. Signal is called by FrameAllocator.Allocate and Shrink, with no host
// lock held; being a leaf, it would be safe under any.

/// <summary>
/// The background reclaimer's wake-up: one pending flag and a monitor the reclaimer
/// thread blocks on at once. No spin phase: before it blocks, <see cref="SemaphoreSlim.Wait(int)"/>
/// spins <c>SpinWait.SpinOnce</c> up to 4 x 35 times and <see cref="ManualResetEventSlim.Wait(int)"/>
/// (default spin count) 35 times, all but the first 10 of them <see cref="Thread.Yield"/> or
/// <c>Thread.Sleep(0)</c>; on a machine with no idle core each yield leaves the thread
/// runnable until its next turn. Behind a 50 ms timed wait the reclaimer was runnable
/// nearly all the time while it had nothing to do, taking turns from vCPU threads
/// (bench/RESULTS.md, "The background reclaimer's wait"). <see cref="Monitor.Wait(object, int)"/>
/// parks the thread on its event straight away.
/// </summary>
/// <remarks>
/// Why no wake is lost: <see cref="Signal"/> sets <c>_pending</c>, then takes the gate to
/// pulse; the waiter reads <c>_pending</c> under the gate and waits only if it is clear,
/// and <see cref="Monitor.Wait(object, int)"/> releases the gate atomically with starting to wait.
/// So a signal either finds the waiter's check still ahead (it sees the flag) or the
/// waiter inside the wait (the pulse reaches it). The flag also makes a signal cheap
/// while one is pending: the allocator signals on every allocation at or below the low
/// watermark, and all but the first read one word and return.
/// </remarks>
internal sealed class ReclaimerWake
{
    private readonly object _gate = new();
    private int _pending;   // 1 from a signal until a wait takes it; interlocked

    /// <summary>Ask the reclaimer to look at the free count (cheap when a wake is already pending).</summary>
    public void Signal()
    {
        if (Volatile.Read(ref _pending) != 0) return;
        if (Interlocked.Exchange(ref _pending, 1) != 0) return;
        lock (_gate) Monitor.Pulse(_gate);
    }

    /// <summary>Take a pending signal without waiting: the look that follows answers it (the reclaimer's first look).</summary>
    public void Take() => Interlocked.Exchange(ref _pending, 0);

    /// <summary>Whether a signal is pending (not taken by a wait yet).</summary>
    public bool IsPending => Volatile.Read(ref _pending) != 0;

    /// <summary>
    /// Block until signalled (and take the signal) or until <paramref name="stop"/> is
    /// requested (throws <see cref="OperationCanceledException"/>). No timeout: nothing
    /// the reclaimer owes is found by looking, every cause of a round signals.
    /// </summary>
    public void WaitForSignal(CancellationToken stop)
    {
        if (Interlocked.Exchange(ref _pending, 0) != 0) return;
        using var wakeOnStop = stop.UnsafeRegister(static g => PulseAll(g!), _gate);
        lock (_gate)
        {
            while (Interlocked.Exchange(ref _pending, 0) == 0)
            {
                stop.ThrowIfCancellationRequested();
                Monitor.Wait(_gate);
            }
        }
    }

    /// <summary>
    /// Block for <paramref name="milliseconds"/> whatever is signalled meanwhile, then take
    /// any signal (the round that follows the sleep answers it); or until
    /// <paramref name="stop"/> is requested (throws). The reclaimer's back-off: signals
    /// from allocations do not cut it short, so a round that cannot make progress is not
    /// retried once per allocation.
    /// </summary>
    public void Sleep(int milliseconds, CancellationToken stop)
    {
        long deadline = Environment.TickCount64 + milliseconds;
        using var wakeOnStop = stop.UnsafeRegister(static g => PulseAll(g!), _gate);
        lock (_gate)
        {
            for (long left = milliseconds; left > 0; left = deadline - Environment.TickCount64)
            {
                stop.ThrowIfCancellationRequested();
                // A signal that arrives now pulses the gate once (the flag was clear); later
                // ones see the flag set and do not, so this loop wakes at most once early.
                Monitor.Wait(_gate, (int)left);
            }
            stop.ThrowIfCancellationRequested();
        }
        Interlocked.Exchange(ref _pending, 0);
    }

    private static void PulseAll(object gate)
    {
        lock (gate) Monitor.PulseAll(gate);
    }
}
