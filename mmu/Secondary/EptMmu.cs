using System.Diagnostics;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Secondary;

// Lock order (mmu/LOCKING.md): host locks taken inside GetUserPage are never
// held when _mmuLock is taken by a fault; the host calls InvalidateRangeStart
// with its own locks held, so _mmuLock nests inside them and a fault must not
// hold _mmuLock across GetUserPage. _slotLock is outermost and only taken by
// slot changes.
//
//   _slotLock   -> serialises slot changes; a slot change waits until no
//                  invalidation is in flight.
//   _mmuLock    -> guards _ept writes, _seq's count and range, _vcpus.
//
// The fault/invalidate protocol (docs/DESIGN.md "The fault / invalidate
// protocol"; the race of the 2008 thread):
//
//   vCPU fault on gfn                       host invalidation of hva range r
//   ------------------------------------    --------------------------------------
//   seq0 = _seq.Sequence                    InvalidateRangeStart(r):
//   GetUserPage(hva) -> frame (+ref)           lock; add r to the ranges in progress
//                                               zap entries in r; flush vCPUs; unlock
//                                           host clears its PTEs, frees frames
//   lock                                    InvalidateRangeEnd(r):
//   if a range in progress covers gfn          lock; seq++; remove r; unlock
//      or seq != seq0:
//       unlock; PutUserPage(unused); retry
//   install entry; the protocol gives the reference back (or, under
//   pin, keeps it until the entry is zapped); unlock
//
// Whatever the interleaving, a frame found by GetUserPage before or during an
// invalidation is never installed: either the fault's locked re-check sees
// a range in progress over its gfn, or it sees seq moved. Which re-check runs
// is the host address space's protocol (INotifierProtocol): the teaching
// variant Broken2008Protocol re-checks nothing, and the invariant checker
// catches the stale entry.

/// <summary>
/// The EPT-like secondary MMU: guest-physical page to host frame, populated by
/// secondary faults through the host address space and torn down by its MMU
/// notifier callbacks.
/// </summary>
public sealed unsafe partial class EptMmu : ISecondaryMmu, IMmuNotifierSubscriber, IRemoteTlbFlush, IDisposable
{
    private readonly IHostMemory _host;
    private readonly Lock _mmuLock = new();
    private readonly Lock _slotLock = new();
    private readonly EptTable _ept = new();
    private readonly SlotTable _slots = new();
    private readonly InvalidateSequence _seq;
    private readonly INotifierProtocol _protocol;
    private readonly SlotRangeWalker _walker;
    private VcpuLink[] _vcpus = [];            // replaced under _mmuLock, read lock-free
    private ShootdownCounts _shootdowns;       // guarded by _mmuLock; read racily for reports
    private long _pinned;                      // page references the entries hold (interlocked; the protocol decides)
    private bool _registered;

    /// <summary>
    /// An MMU over <paramref name="host"/> with one slot: guest-physical [0, <paramref name="ramBytes"/>)
    /// at <paramref name="ramHva"/>. It follows the protocol of the host's notifier registry.
    /// </summary>
    public EptMmu(IHostMemory host, ulong ramBytes, Hva ramHva)
    {
        _host = host;
        _seq = new InvalidateSequence(_mmuLock);
        _protocol = host.Notifiers.Protocol;
        _walker = new SlotRangeWalker(_mmuLock, _slots, this);
        RamBytes = ramBytes;
        _slots.Add(new MemorySlot(0, new Gpa(0), ramBytes, ramHva));
        host.Notifiers.Register(this);
        _registered = true;
    }

    public ulong RamBytes { get; }
    /// <summary>The fault/invalidate protocol this MMU's faults follow (its host's).</summary>
    public NotifierProtocol Protocol => _protocol.Kind;
    public EptTable Table => _ept;
    public SlotTable Slots => _slots;
    /// <summary>The host address space behind the slots (for the invariant checker).</summary>
    public IHostMemory Host => _host;

    /// <summary>
    /// Host frames the entries hold a page reference on now, so the host cannot free them:
    /// every mapped page under a protocol whose mappings pin (<see cref="NotifierProtocol.Pin"/>), else 0.
    /// </summary>
    public long PinnedFrames => Interlocked.Read(ref _pinned);

    /// <summary>How the vCPU flushes of TLB shootdowns were completed so far (a racy snapshot).</summary>
    public ShootdownCounts Shootdowns => _shootdowns;

    /// <summary>Optional invariant checker, consulted at every install and zap.</summary>
    public IMmuInvariantChecker? Checker { get; set; }

    /// <summary>Optional recorder of faults, invalidations and shootdown waits (the measurement hub).</summary>
    public IMmuEventSink? Events { get; set; }

    /// <summary>Test seam: runs on the faulting thread between GetUserPage and the locked re-check (forced interleavings).</summary>
    internal Action<Gpa, Hfn>? AfterGetUserPageHook { get; set; }

    public void AttachVcpu(VcpuLink vcpu)
    {
        lock (_mmuLock) _vcpus = [.. _vcpus, vcpu];
    }

    public void DetachVcpu(VcpuLink vcpu)
    {
        lock (_mmuLock) _vcpus = [.. _vcpus.Where(v => v != vcpu)];
    }

    public TranslateStatus Translate(VcpuLink vcpu, Gpa gpa, AccessKind kind, out byte* hostPage)
    {
        ulong gfn = gpa.PageNumber;
        var entry = _ept.Lookup(gfn);
        // The vCPU is about to cache the page: record it as a holder (and A/D)
        // before the pointer leaves; a zap that races with this sees the bit or
        // makes the update fail, and then the lookup is repeated.
        ulong want = EptEntry.Accessed | (kind == AccessKind.Write ? EptEntry.Dirty : 0) | EptEntry.VcpuBit(vcpu.Index);
        if (entry.Permits(kind) && _ept.TrySetBits(gfn, entry, want))
        {
            Checker?.OnTlbFill(_host, vcpu.Index, gpa.PageBase, _slots.Find(gpa)!.ToHva(gpa.PageBase), entry.Frame);
            // SAFETY: the entry is present, so the frame stays allocated until an
            // invalidation zaps it, and that invalidation waits for this vCPU to
            // acknowledge a flush before the host frees the frame.
            hostPage = _host.FrameAddress(entry.Frame);
            return TranslateStatus.Ok;
        }
        return Fault(vcpu, gpa, kind, out hostPage);
    }

    private TranslateStatus Fault(VcpuLink vcpu, Gpa gpa, AccessKind kind, out byte* hostPage)
    {
        hostPage = null;
        var slot = _slots.Find(gpa);
        if (slot is null) return TranslateStatus.Unbacked;
        bool write = kind == AccessKind.Write;
        if (write && slot.ReadOnly) return TranslateStatus.Protection;
        ulong gfn = gpa.PageNumber;
        Hva hva = slot.ToHva(gpa.PageBase);
        long started = Stopwatch.GetTimestamp();
        bool wasInGuest = vcpu.Mode == VcpuMode.InGuest;
        if (wasInGuest) vcpu.ExitGuest();          // GetUserPage and the MMU lock may block
        var wait = new SpinWait();
        var answered = FaultKind.Present;   // the slowest answer of every try: the latency includes it
        try
        {
            while (true)
            {
                long seq = _seq.Sequence;
                if (_protocol.FaultShouldWait(_seq, gfn))
                {
                    wait.SpinOnce();                // an invalidation covers us: let it finish first
                    continue;
                }
                var r = _host.GetUserPage(hva, write, out var frame, out var how);
                if (how > answered) answered = how;
                if (r != HostFaultResult.Ok)
                    return r == HostFaultResult.Protection ? TranslateStatus.Protection : TranslateStatus.HostError;
                AfterGetUserPageHook?.Invoke(gpa, frame);
                lock (_mmuLock)
                {
                    if (_protocol.FaultMustRetryLocked(_seq, gfn, seq))
                    {
                        _host.PutUserPage(frame, PageRelease.Unused);
                        Events?.FaultRetried(vcpu.Index);
                        continue;
                    }
                    var entry = _ept.Lookup(gfn);
                    ulong used = EptEntry.Accessed | (write ? EptEntry.Dirty : 0) | EptEntry.VcpuBit(vcpu.Index);
                    bool same = entry.IsPresent && entry.Frame == frame;
                    if (!same || (write && !entry.IsWritable))
                    {
                        var fresh = EptEntry.Make(frame, writable: write || (same && entry.IsWritable), executable: true)
                            .With(used | (same ? entry.Raw & (EptEntry.VcpuMask | EptEntry.Dirty) : 0));
                        Checker?.OnInstall(_host, gpa.PageBase, hva, frame);
                        _ept.SetLocked(gfn, fresh);
                        // An entry of another frame is replaced: whatever it held goes with it.
                        if (entry.IsPresent && !same) DropMappingLocked(entry);
                    }
                    else _ept.SetLocked(gfn, entry.With(used));
                    // The fault's reference: given back, or kept by the entry as a pin (the protocol's
                    // choice). Under the lock: a zap right after the unlock must find the pin decided.
                    Interlocked.Add(ref _pinned, _protocol.FaultInstalled(_host, frame, write ? PageRelease.Dirty : PageRelease.Clean, newMapping: !same));
                }
                // SAFETY: the entry is installed under the protocol; see Translate.
                hostPage = _host.FrameAddress(frame);
                Events?.FaultCompleted(vcpu.Index, gfn, answered, started, Stopwatch.GetTimestamp());
                return TranslateStatus.Ok;
            }
        }
        finally
        {
            // The caller checks VcpuLink.HasRequests after Translate: a flush asked
            // while we were outside guest mode was not waited for.
            if (wasInGuest) vcpu.EnterGuest();
        }
    }

    /// <summary>
    /// Add a memory slot. Waits while invalidations are in flight, so that no
    /// invalidation in flight had its guest range computed against a different slot set.
    /// </summary>
    public void AddSlot(MemorySlot slot)
    {
        lock (_slotLock)
        {
            _mmuLock.Enter();
            try
            {
                WaitForNoInvalidationLocked();
                _slots.Add(slot);
            }
            finally { _mmuLock.Exit(); }
        }
    }

    /// <summary>
    /// Remove a memory slot: wait while invalidations are in flight, zap its
    /// entries, flush every vCPU, and only then forget it.
    /// </summary>
    public bool RemoveSlot(int id)
    {
        lock (_slotLock)
        {
            _mmuLock.Enter();
            try
            {
                WaitForNoInvalidationLocked();
                var slot = _slots.Slots.FirstOrDefault(s => s.Id == id);
                if (slot is null) return false;
                var zap = new ZapHandler(this);
                _walker.WalkLocked(new HvaRangeWalk(slot.HvaStart, slot.HvaEnd), ref zap);
                FlushVcpusLocked(ulong.MaxValue, slot.GpaStart.PageNumber, slot.GpaEnd.PageNumber - 1);
                // A fault that found the page before the zap re-checks the sequence and retries.
                _seq.BeginLocked(slot.GpaStart.PageNumber, slot.GpaEnd.PageNumber - 1);
                _slots.Remove(id);
                _seq.EndLocked(slot.GpaStart.PageNumber, slot.GpaEnd.PageNumber - 1);
                return true;
            }
            finally { _mmuLock.Exit(); }
        }
    }

    /// <summary>Release the MMU lock until no invalidation is in progress; returns with it held.</summary>
    private void WaitForNoInvalidationLocked()
    {
        while (_seq.InProgressLocked > 0)
        {
            _mmuLock.Exit();
            Thread.Yield();
            _mmuLock.Enter();
        }
    }

    /// <summary>An entry that mapped <paramref name="old"/>'s frame is gone: the protocol takes back what it held.</summary>
    private void DropMappingLocked(EptEntry old)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "entries change under the MMU lock");
        Interlocked.Add(ref _pinned, _protocol.MappingDropped(_host, old.Frame));
    }

    /// <summary>
    /// Unsubscribe; then, if the entries still hold page references (pins), zap them all so
    /// the references go back before the host is torn down (a VM's mappings go with it).
    /// </summary>
    public void Dispose()
    {
        if (_registered)
        {
            _host.Notifiers.Unregister(this);
            _registered = false;
        }
        if (Interlocked.Read(ref _pinned) == 0) return;
        var zap = new ZapHandler(this);
        _walker.Walk(new HvaRangeWalk(new Hva(0), new Hva(ulong.MaxValue), FlushOnReturn: true), ref zap);
    }
}
