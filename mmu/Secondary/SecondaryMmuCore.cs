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
//   _mmuLock    -> guards the guest-frame table's writes, _seq's count and
//                  ranges, _vcpus, and everything a subclass keeps (EptMmu:
//                  nothing more; ShadowMmu: its shadow pages, reverse map,
//                  write-protected frames and root cache).
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
/// What every secondary MMU over a host address space is made of (docs/DESIGN.md
/// "The secondary MMU core"): the memory slots, the MMU lock, the notifier
/// protocol's invalidate sequence, the vCPU list and the shootdown, the
/// guest-frame table with its lock-free hit path, the secondary fault, slot
/// changes and every notifier callback through the shared <see cref="SlotRangeWalker"/>.
/// A subclass keeps only what it maps differently: <see cref="EptMmu"/> nothing
/// beyond the table; the shadow MMU its shadow pages, write protection and reverse map.
/// </summary>
public abstract unsafe partial class SecondaryMmuCore : ISecondaryMmu, IMmuNotifierSubscriber, IRemoteTlbFlush, IDisposable
{
    private protected readonly IHostMemory _host;
    /// <summary>
    /// The host as its sealed binding when it is one, else null: the TLB-miss path asks it for a
    /// frame's address with a direct call instead of an interface call (a virtual-stub dispatch per miss).
    /// </summary>
    private readonly SecondaryHostBinding? _binding;
    private protected readonly Lock _mmuLock = new();
    private readonly Lock _slotLock = new();
    /// <summary>Guest frame -> host frame: EPT's one table, the shadow MMU's direct role. Written under _mmuLock, read lock-free.</summary>
    private protected readonly EptTable _gfnTable = new();
    private protected readonly SlotTable _slots = new();
    private protected readonly InvalidateSequence _seq;
    private protected readonly INotifierProtocol _protocol;
    private protected readonly SlotRangeWalker _walker;
    private VcpuLink[] _vcpus = [];            // replaced under _mmuLock, read lock-free
    private ShootdownCounts _shootdowns;       // guarded by _mmuLock; read racily for reports
    private long _pinned;                      // page references the entries hold (interlocked; the protocol decides)
    private bool _registered;

    /// <summary>
    /// An MMU over <paramref name="host"/> with one slot: guest-physical [0, <paramref name="ramBytes"/>)
    /// at <paramref name="ramHva"/>. It follows the protocol of the host's notifier registry.
    /// The subclass must be ready for callbacks when this returns: call <see cref="Register"/> last in its constructor.
    /// </summary>
    private protected SecondaryMmuCore(IHostMemory host, ulong ramBytes, Hva ramHva)
    {
        _host = host;
        _binding = host as SecondaryHostBinding;
        _seq = new InvalidateSequence(_mmuLock);
        _protocol = host.Notifiers.Protocol;
        _walker = new SlotRangeWalker(_mmuLock, _slots, this);
        RamBytes = ramBytes;
        _slots.Add(new MemorySlot(0, new Gpa(0), ramBytes, ramHva));
    }

    /// <summary>Subscribe to the host's notifiers: from here on callbacks may arrive.</summary>
    private protected void Register()
    {
        _host.Notifiers.Register(this);
        _registered = true;
    }

    public ulong RamBytes { get; }
    /// <summary>The fault/invalidate protocol this MMU's faults follow (its host's).</summary>
    public NotifierProtocol Protocol => _protocol.Kind;
    public SlotTable Slots => _slots;
    /// <summary>The host address space behind the slots (for the invariant checker).</summary>
    public IHostMemory Host => _host;

    /// <summary>
    /// Host frames the entries hold a page reference on now, so the host cannot free them:
    /// under a protocol whose mappings pin (<see cref="NotifierProtocol.Pin"/>) one per entry, else 0.
    /// </summary>
    public long PinnedFrames => Interlocked.Read(ref _pinned);

    /// <summary>How the vCPU flushes of TLB shootdowns were completed so far (a racy snapshot).</summary>
    public ShootdownCounts Shootdowns => _shootdowns;

    /// <summary>Optional invariant checker, consulted at every install, zap and TLB fill.</summary>
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

    /// <summary>
    /// Guest-physical translation: the lock-free hit on the guest-frame table,
    /// else the secondary fault, which installs the entry through <see cref="InstallDirectLocked"/>.
    /// </summary>
    public TranslateStatus Translate(VcpuLink vcpu, Gpa gpa, AccessKind kind, out byte* hostPage)
    {
        ulong gfn = gpa.PageNumber;
        var entry = _gfnTable.Lookup(gfn);
        // The vCPU is about to cache the page: record it as a holder (and A/D)
        // before the pointer leaves; a zap that races with this sees the bit or
        // makes the update fail, and then the lookup is repeated.
        ulong want = EptEntry.Accessed | (kind == AccessKind.Write ? EptEntry.Dirty : 0) | EptEntry.VcpuBit(vcpu.Index);
        if (entry.Permits(kind) && _gfnTable.TrySetBits(gfn, entry, want))
        {
            Checker?.OnTlbFill(_host, vcpu.Index, gpa.PageBase, _slots.Find(gpa)!.ToHva(gpa.PageBase), entry.Frame);
            // SAFETY: the entry is present, so the frame stays allocated until an
            // invalidation zaps it, and that invalidation waits for this vCPU to
            // acknowledge a flush before the host frees the frame.
            hostPage = _binding is { } binding ? binding.FrameAddress(entry.Frame) : _host.FrameAddress(entry.Frame);
            return TranslateStatus.Ok;
        }
        var install = new DirectInstall(this);
        var outcome = Fault(vcpu, gpa, kind, ref install, out var frame);
        // SAFETY: the entry is installed under the protocol; see the hit path above.
        hostPage = outcome == FaultOutcome.Ok ? _host.FrameAddress(frame) : null;
        return outcome switch
        {
            FaultOutcome.Ok => TranslateStatus.Ok,
            FaultOutcome.Unbacked => TranslateStatus.Unbacked,
            FaultOutcome.Protection => TranslateStatus.Protection,
            _ => TranslateStatus.HostError,
        };
    }

    /// <summary>
    /// Install the guest-frame table's entry of a guest-physical fault, under the MMU lock,
    /// once the protocol let it. <paramref name="newMapping"/>: the entry did not map this
    /// frame before (the protocol may pin it). Always installs (true): a refusal is a
    /// guest-virtual fill's (<see cref="IFaultInstall"/>).
    /// </summary>
    private protected abstract bool InstallDirectLocked(VcpuLink vcpu, Gpa gpa, Hfn frame, bool write, out bool newMapping);

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
    /// entries (and, for the shadow MMU, the shadow pages of guest tables in it),
    /// flush every vCPU, and only then forget it.
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
                ulong first = slot.GpaStart.PageNumber, last = slot.GpaEnd.PageNumber - 1;
                var zap = new ZapHandler(this, contentsChange: true);
                _walker.WalkLocked(new HvaRangeWalk(slot.HvaStart, slot.HvaEnd), ref zap);
                FlushVcpusLocked(ulong.MaxValue, first, last);
                // A fault that found the page before the zap re-checks the sequence and retries.
                _seq.BeginLocked(first, last);
                _slots.Remove(id);
                _seq.EndLocked(first, last);
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

    /// <summary>
    /// TLB shootdown of guest frames [<paramref name="firstGfn"/>, <paramref name="lastGfn"/>] (<see cref="VcpuShootdown"/>);
    /// of a batch, <paramref name="gfns"/> lists its frames (empty: the whole range).
    /// </summary>
    private protected void FlushVcpusLocked(ulong holders, ulong firstGfn, ulong lastGfn, ReadOnlySpan<ulong> gfns = default)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "a shootdown runs under the MMU lock");
        VcpuShootdown.FlushLocked(_vcpus, Events, ref _shootdowns, holders, firstGfn, lastGfn, gfns);
    }

    void IRemoteTlbFlush.FlushRemoteTlbsLocked(ulong holders, ulong firstGfn, ulong lastGfn)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "a walk flushes with the MMU lock held");
        FlushVcpusLocked(holders, firstGfn, lastGfn);
    }

    void IRemoteTlbFlush.FlushRemoteTlbsLocked(ulong holders, ulong firstGfn, ulong lastGfn, ReadOnlySpan<ulong> gfns)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "a walk flushes with the MMU lock held");
        FlushVcpusLocked(holders, firstGfn, lastGfn, gfns);
    }

    /// <summary>An entry that mapped <paramref name="frame"/> is gone: the protocol takes back what it held (a pin, under pin).</summary>
    private protected void DropMappingLocked(Hfn frame)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "entries change under the MMU lock");
        Interlocked.Add(ref _pinned, _protocol.MappingDropped(_host, frame));
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
        GC.SuppressFinalize(this);
        if (Interlocked.Read(ref _pinned) == 0) return;
        var zap = new ZapHandler(this, contentsChange: true);
        _walker.Walk(new HvaRangeWalk(new Hva(0), new Hva(ulong.MaxValue), FlushOnReturn: true), ref zap);
    }
}
