namespace ToyVmm.Mmu.Notifiers;

// Lock order: _writeLock (register/unregister only) is never held while a
// callback runs. Callbacks run against an immutable snapshot of the subscriber
// list; a snapshot's reader count is its grace period.
//
//   caller of a callback                 Unregister(s)
//   snap = _snapshot                     take _writeLock
//   snap.Readers++        (interlocked)  _snapshot = new list without s (interlocked)
//   if snap != _snapshot: undo, retry    wait until old.Readers == 0
//   call every subscriber in snap        release _writeLock; return
//   snap.Readers--
//
// A caller that pinned the old snapshot before the swap is waited for; one
// that pinned it after sees the swap on its re-check and never calls s. So
// when Unregister returns, s gets no further callback.

/// <summary>
/// The MMU-notifier subscribers of one host address space, the protocol they
/// and the host follow, and the fan-out of every notifier event to them.
/// Subscribers may come and go while callbacks run.
/// </summary>
/// <remarks>
/// The registry knows its subscribers only as <see cref="IMmuNotifierSubscriber"/>:
/// it never names a host or a secondary MMU type (enforced by the architecture test).
/// </remarks>
public sealed class MmuNotifierRegistry
{
    private sealed class Snapshot(IMmuNotifierSubscriber[] subscribers)
    {
        public readonly IMmuNotifierSubscriber[] Subscribers = subscribers;
        public int Readers;
    }

    private readonly Lock _writeLock = new();
    private Snapshot _snapshot = new([]);   // replaced under _writeLock, read lock-free
    private bool _released;                 // guarded by _writeLock
    private INotifierProtocol _protocol = SequenceProtocol.Instance;   // written under _writeLock while empty

    /// <summary>
    /// The fault/invalidate protocol of this address space: how the host's
    /// start and end reach the subscribers, and what their faults re-check.
    /// Chosen before the first subscriber registers (both halves must agree).
    /// </summary>
    public INotifierProtocol Protocol
    {
        get => Volatile.Read(ref _protocol);
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            lock (_writeLock)
            {
                if (_snapshot.Subscribers.Length != 0)
                    throw new InvalidOperationException("the notifier protocol is chosen before any subscriber registers");
                Volatile.Write(ref _protocol, value);
            }
        }
    }

    /// <summary>Number of subscribers now.</summary>
    public int Count => Volatile.Read(ref _snapshot).Subscribers.Length;

    /// <summary>True when there is nobody to tell (the host may skip building ranges).</summary>
    public bool IsEmpty => Count == 0;

    public void Register(IMmuNotifierSubscriber subscriber)
    {
        ArgumentNullException.ThrowIfNull(subscriber);
        lock (_writeLock)
        {
            if (_released) throw new InvalidOperationException("the address space has been released; no subscriber can register");
            var old = _snapshot;
            if (Array.IndexOf(old.Subscribers, subscriber) >= 0)
                throw new InvalidOperationException("subscriber is already registered");
            Volatile.Write(ref _snapshot, new Snapshot([.. old.Subscribers, subscriber]));
        }
    }

    /// <summary>
    /// Remove a subscriber. Returns after every callback that may still be
    /// calling it has finished (the grace period). Must not be called from
    /// inside a callback of this registry.
    /// </summary>
    public bool Unregister(IMmuNotifierSubscriber subscriber)
    {
        lock (_writeLock)
        {
            var old = _snapshot;
            int i = Array.IndexOf(old.Subscribers, subscriber);
            if (i < 0) return false;
            var list = old.Subscribers.Where((_, j) => j != i).ToArray();
            Interlocked.Exchange(ref _snapshot, new Snapshot(list));
            var spin = new SpinWait();
            while (Volatile.Read(ref old.Readers) != 0) spin.SpinOnce();
            return true;
        }
    }

    private Snapshot Pin()
    {
        while (true)
        {
            var snap = Volatile.Read(ref _snapshot);
            Interlocked.Increment(ref snap.Readers);
            if (ReferenceEquals(snap, Volatile.Read(ref _snapshot))) return snap;
            Interlocked.Decrement(ref snap.Readers);
        }
    }

    private static void Unpin(Snapshot snap) => Interlocked.Decrement(ref snap.Readers);

    /// <summary>
    /// Before the host changes the PTEs of <paramref name="range"/>: the protocol
    /// tells the subscribers (under <see cref="SequenceProtocol"/>, every start;
    /// a refused non-blocking start ends the ones already started). False: the
    /// host operation must change nothing, back off and retry.
    /// </summary>
    public bool InvalidateRangeStart(in InvalidateRange range)
    {
        var snap = Pin();
        try { return _protocol.BeforePteChange(snap.Subscribers, range); }
        finally { Unpin(snap); }
    }

    /// <summary>After the PTEs of <paramref name="range"/> hold their new values, before any frame is freed.</summary>
    public void InvalidateRangeEnd(in InvalidateRange range)
    {
        var snap = Pin();
        try { _protocol.AfterPteChange(snap.Subscribers, range); }
        finally { Unpin(snap); }
    }

    public bool ClearFlushYoung(Hva start, Hva end)
    {
        if (!Volatile.Read(ref _protocol).SubscribersHearAging) return false;   // a host without notifiers has nobody to ask
        var snap = Pin();
        try
        {
            bool young = false;
            foreach (var s in snap.Subscribers) young |= s.ClearFlushYoung(start, end);
            return young;
        }
        finally { Unpin(snap); }
    }

    public bool ClearYoung(Hva start, Hva end)
    {
        if (!Volatile.Read(ref _protocol).SubscribersHearAging) return false;   // a host without notifiers has nobody to ask
        var snap = Pin();
        try
        {
            bool young = false;
            foreach (var s in snap.Subscribers) young |= s.ClearYoung(start, end);
            return young;
        }
        finally { Unpin(snap); }
    }

    public bool TestYoung(Hva address)
    {
        if (!Volatile.Read(ref _protocol).SubscribersHearAging) return false;   // a host without notifiers has nobody to ask
        var snap = Pin();
        try
        {
            foreach (var s in snap.Subscribers)
                if (s.TestYoung(address)) return true;
            return false;
        }
        finally { Unpin(snap); }
    }

    /// <summary>The address space is being torn down: every subscriber drops its mappings; no one may register after.</summary>
    public void Release()
    {
        lock (_writeLock) _released = true;
        var snap = Pin();
        try
        {
            foreach (var s in snap.Subscribers) s.Release();
        }
        finally { Unpin(snap); }
    }
}
