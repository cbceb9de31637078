using System.Diagnostics;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Secondary.Shadow;

// Lock order (mmu/LOCKING.md): as EptMmu. _slotLock is outermost (slot
// changes); _mmuLock nests inside the host's address-space lock (notifier
// callbacks) and is never held across GetUserPage; the checker's lock is a leaf.
//
//   _slotLock   -> serialises slot changes; a slot change waits until no
//                  invalidation is in flight.
//   _mmuLock    -> guards the direct-role table's writes, every shadow page
//                  (links, leaf entries, parents), the page hash, the
//                  write-protected frame index, the reverse map, the root
//                  cache, _seq's count and ranges, _vcpus, the counters.
//
// The fault/invalidate protocol is EptMmu's (see its diagram, and
// docs/DESIGN.md "The fault / invalidate protocol"): read the sequence,
// get_user_pages with no lock, take _mmuLock, let the protocol re-check, then
// install. A guest-virtual fill (ShadowMmu.Virtual.cs) adds one step under the
// lock before the install: build or find the shadow pages of the walk, which
// write-protects their guest frames, then re-read every guest entry of the
// walk and retry if one changed:
//
//   vCPU A fill of va                     vCPU B writes the guest PTE of va
//   ------------------------------------  ------------------------------------
//   walk: reads PTE (old)                 (page table not yet shadowed:
//   get_user_pages(data page)              a plain write through its TLB)
//   lock                                   ...
//   shadow page for the table: new ->     flush request: B acknowledges only
//     write-protect, flush every vCPU      after its write has landed
//   re-read PTE: changed -> Retry         (page table shadowed: the write
//                                           traps; B writes, then locks and
//                                           zaps the entries it covers)
//
// Whatever the order, an entry built from the old PTE is either refused by the
// re-read or zapped by the trapped write that follows the change.

/// <summary>
/// The shadow MMU (docs/DESIGN.md "The shadow MMU"): guest-virtual pages
/// mapped straight to host frames through shadow pages keyed by guest
/// page-table frame and role, kept coherent with the guest's tables by
/// write-protecting them and with the host by its MMU notifiers, through a
/// reverse map from guest frame to shadow entries.
/// </summary>
public sealed unsafe partial class ShadowMmu : ISecondaryMmu, IShadowPaging, IMmuNotifierSubscriber, IRemoteTlbFlush, IDisposable
{
    /// <summary>Roots kept in the root cache; beyond it the least recently used is zapped.</summary>
    public const int DefaultMaxRoots = 16;

    /// <summary>The floor of the default shadow-page bound (<see cref="DefaultMaxPages"/>).</summary>
    public const int MinDefaultMaxPages = 64;

    /// <summary>
    /// The default bound on live shadow pages: a floor plus four shadow pages per 512 pages of
    /// guest RAM (the page tables that map all of RAM once, four times over), so a guest with
    /// many page tables cannot grow the VMM without limit (KVM's n_max_mmu_pages). Never less
    /// than the roots plus one walk (<paramref name="maxRoots"/> + 5).
    /// </summary>
    public static int DefaultMaxPages(ulong ramBytes, int maxRoots = DefaultMaxRoots) =>
        (int)Math.Max((ulong)maxRoots + 5, MinDefaultMaxPages + 4 * (ramBytes / Page.Size / ShadowPage.Entries));

    private readonly IHostMemory _host;
    private readonly Lock _mmuLock = new();
    private readonly Lock _slotLock = new();
    private readonly EptTable _direct = new();   // the direct role: guest frame -> host frame (paging off, page-table reads, the loader)
    private readonly SlotTable _slots = new();
    private readonly InvalidateSequence _seq;
    private readonly INotifierProtocol _protocol;
    private readonly SlotRangeWalker _walker;
    private VcpuLink[] _vcpus = [];              // replaced under _mmuLock, read lock-free
    private ShootdownCounts _shootdowns;         // guarded by _mmuLock; read racily for reports
    private ShadowCounts _counts;                // guarded by _mmuLock; read racily for reports
    private long _pinned;                        // page references the entries hold (interlocked; the protocol decides)
    private bool _registered;

    /// <param name="maxPages">The bound on live shadow pages; 0 for <see cref="DefaultMaxPages"/>.</param>
    public ShadowMmu(IHostMemory host, ulong ramBytes, Hva ramHva, int maxRoots = DefaultMaxRoots, int maxPages = 0)
    {
        if (maxRoots < 1) throw new ArgumentOutOfRangeException(nameof(maxRoots), maxRoots, "the root cache needs room for one root");
        // Roots are never recycled: the bound must leave room for every root and one walk below one.
        if (maxPages != 0 && maxPages < maxRoots + 5)
            throw new ArgumentOutOfRangeException(nameof(maxPages), maxPages, $"the shadow-page bound needs room for {maxRoots} roots and one walk ({maxRoots + 5})");
        _host = host;
        MaxRoots = maxRoots;
        MaxPages = maxPages != 0 ? maxPages : DefaultMaxPages(ramBytes, maxRoots);
        _seq = new InvalidateSequence(_mmuLock);
        _protocol = host.Notifiers.Protocol;
        _walker = new SlotRangeWalker(_mmuLock, _slots, this);
        RamBytes = ramBytes;
        _slots.Add(new MemorySlot(0, new Gpa(0), ramBytes, ramHva));
        host.Notifiers.Register(this);
        _registered = true;
    }

    public ulong RamBytes { get; }
    public int MaxRoots { get; }
    /// <summary>Live shadow pages at most; creating one beyond it recycles the least recently used.</summary>
    public int MaxPages { get; }
    public NotifierProtocol Protocol => _protocol.Kind;
    public SlotTable Slots => _slots;
    public IHostMemory Host => _host;
    /// <summary>The direct role's table (guest-physical accesses), for tests.</summary>
    public EptTable DirectTable => _direct;

    /// <summary>
    /// Page references the entries hold now, so the host cannot free those frames: under a
    /// protocol whose mappings pin (<see cref="NotifierProtocol.Pin"/>) one per entry (a guest
    /// frame mapped by its direct entry and two leaves holds three), else 0.
    /// </summary>
    public long PinnedFrames => Interlocked.Read(ref _pinned);

    /// <summary>How the vCPU flushes of TLB shootdowns were completed so far (a racy snapshot).</summary>
    public ShootdownCounts Shootdowns => _shootdowns;

    /// <summary>The shadow MMU's own counters (a racy snapshot, with the live figures read now).</summary>
    public ShadowCounts Counts
    {
        get
        {
            var c = _counts;
            c.PagesLive = Volatile.Read(ref _pagesLive);
            c.RootsCached = Volatile.Read(ref _rootCount);
            return c;
        }
    }

    public IMmuInvariantChecker? Checker { get; set; }
    public IMmuEventSink? Events { get; set; }

    /// <summary>Test seam: runs on the faulting thread between GetUserPage and the locked re-check.</summary>
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
    /// Guest-physical access through the direct role: the guest walk reading
    /// page tables, the loader, a vCPU with paging off. Same hit path as EPT's.
    /// </summary>
    public TranslateStatus Translate(VcpuLink vcpu, Gpa gpa, AccessKind kind, out byte* hostPage)
    {
        ulong gfn = gpa.PageNumber;
        var entry = _direct.Lookup(gfn);
        ulong want = EptEntry.Accessed | (kind == AccessKind.Write ? EptEntry.Dirty : 0) | EptEntry.VcpuBit(vcpu.Index);
        if (entry.Permits(kind) && _direct.TrySetBits(gfn, entry, want))
        {
            Checker?.OnTlbFill(_host, vcpu.Index, gpa.PageBase, _slots.Find(gpa)!.ToHva(gpa.PageBase), entry.Frame);
            // SAFETY: the entry is present, so the frame stays allocated until an invalidation
            // zaps it, and that invalidation waits for this vCPU's flush before the host frees it.
            hostPage = _host.FrameAddress(entry.Frame);
            return TranslateStatus.Ok;
        }
        var install = new DirectInstall();
        var st = Fault(vcpu, gpa, kind, ref install, out var frame);
        hostPage = st == VirtualStatus.Ok ? _host.FrameAddress(frame) : null;
        return st switch
        {
            VirtualStatus.Ok => TranslateStatus.Ok,
            VirtualStatus.Unbacked => TranslateStatus.Unbacked,
            VirtualStatus.Protection => TranslateStatus.Protection,
            _ => TranslateStatus.HostError,
        };
    }

    /// <summary>What a secondary fault installs once the protocol let it (a struct: a fault allocates nothing).</summary>
    private interface IInstall
    {
        /// <summary>Install under the MMU lock; false when the install must not happen (the fault gives the page back and reports Retry).</summary>
        /// <param name="newMapping">Set when the entry did not map this frame before (the protocol may pin it).</param>
        bool InstallLocked(ShadowMmu mmu, VcpuLink vcpu, Gpa gpa, Hfn frame, bool write, out bool newMapping);
    }

    private struct DirectInstall : IInstall
    {
        public readonly bool InstallLocked(ShadowMmu mmu, VcpuLink vcpu, Gpa gpa, Hfn frame, bool write, out bool newMapping) =>
            mmu.InstallDirectLocked(vcpu, gpa, frame, write, out newMapping);
    }

    /// <summary>
    /// The secondary fault, as EptMmu's: leave guest mode, get_user_pages with no
    /// lock held, take the lock, let the protocol re-check, install. The install
    /// may refuse (a guest-virtual fill whose walk went stale): the page is given
    /// back and the fault reports <see cref="VirtualStatus.Retry"/>.
    /// </summary>
    private VirtualStatus Fault<T>(VcpuLink vcpu, Gpa gpa, AccessKind kind, ref T install, out Hfn frame) where T : struct, IInstall
    {
        frame = default;
        var slot = _slots.Find(gpa);
        if (slot is null) return VirtualStatus.Unbacked;
        bool write = kind == AccessKind.Write;
        if (write && slot.ReadOnly) return VirtualStatus.Protection;
        ulong gfn = gpa.PageNumber;
        Hva hva = slot.ToHva(gpa.PageBase);
        long started = Stopwatch.GetTimestamp();
        bool wasInGuest = vcpu.Mode == VcpuMode.InGuest;
        if (wasInGuest) vcpu.ExitGuest();          // GetUserPage and the MMU lock may block
        var wait = new SpinWait();
        var answered = FaultKind.Present;
        try
        {
            while (true)
            {
                long seq = _seq.Sequence;
                if (_protocol.FaultShouldWait(_seq, gfn))
                {
                    wait.SpinOnce();
                    continue;
                }
                var r = _host.GetUserPage(hva, write, out var got, out var how);
                if (how > answered) answered = how;
                if (r != HostFaultResult.Ok)
                    return r == HostFaultResult.Protection ? VirtualStatus.Protection : VirtualStatus.HostError;
                AfterGetUserPageHook?.Invoke(gpa, got);
                lock (_mmuLock)
                {
                    if (_protocol.FaultMustRetryLocked(_seq, gfn, seq))
                    {
                        _host.PutUserPage(got, PageRelease.Unused);
                        Events?.FaultRetried(vcpu.Index);
                        continue;
                    }
                    if (!install.InstallLocked(this, vcpu, gpa, got, write, out bool newMapping))
                    {
                        _host.PutUserPage(got, PageRelease.Unused);
                        return VirtualStatus.Retry;
                    }
                    // The fault's reference: given back, or kept by the entry as a pin (the protocol's
                    // choice). Under the lock: a zap right after the unlock must find the pin decided.
                    Interlocked.Add(ref _pinned, _protocol.FaultInstalled(_host, got, write ? PageRelease.Dirty : PageRelease.Clean, newMapping));
                }
                frame = got;
                Events?.FaultCompleted(vcpu.Index, gfn, answered, started, Stopwatch.GetTimestamp());
                return VirtualStatus.Ok;
            }
        }
        finally
        {
            // The caller checks VcpuLink.HasRequests afterwards: a flush asked while we
            // were outside guest mode was not waited for.
            if (wasInGuest) vcpu.EnterGuest();
        }
    }

    /// <summary>Install the direct-role entry of a guest-physical fault (the protocol has let it).</summary>
    private bool InstallDirectLocked(VcpuLink vcpu, Gpa gpa, Hfn frame, bool write, out bool newMapping)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "installing needs the MMU lock");
        ulong gfn = gpa.PageNumber;
        // A guest-physical write to a shadowed page table (the loader, paging off) cannot be
        // trapped afterwards: drop its shadow pages first, so nothing derived from it remains.
        if (write && IsWriteProtectedLocked(gfn)) UnshadowLocked(gfn);
        var entry = _direct.Lookup(gfn);
        bool same = entry.IsPresent && entry.Frame == frame;
        bool writable = (write || (same && entry.IsWritable)) && !IsWriteProtectedLocked(gfn);
        ulong used = EptEntry.Accessed | (write ? EptEntry.Dirty : 0) | EptEntry.VcpuBit(vcpu.Index);
        var fresh = EptEntry.Make(frame, writable, executable: true)
            .With(used | (same ? entry.Raw & (EptEntry.VcpuMask | EptEntry.Dirty) : 0));
        if (entry.IsPresent && !same)   // only under broken-2008: the checker judges the stale one
        {
            ulong holders = ZapGfnLocked(gfn);
            if (holders != 0) FlushLocked(holders, gfn, gfn);
        }
        if (!same) NoteMappedLocked(gfn, frame, null, 0);
        _direct.SetLocked(gfn, fresh);
        newMapping = !same;
        return true;
    }


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
                var zap = new ZapHandler(this, contentsChange: true);
                _walker.WalkLocked(new HvaRangeWalk(slot.HvaStart, slot.HvaEnd), ref zap);
                FlushLocked(ulong.MaxValue, 0, ulong.MaxValue);
                _seq.BeginLocked(slot.GpaStart.PageNumber, slot.GpaEnd.PageNumber - 1);
                _slots.Remove(id);
                _seq.EndLocked(slot.GpaStart.PageNumber, slot.GpaEnd.PageNumber - 1);
                return true;
            }
            finally { _mmuLock.Exit(); }
        }
    }

    private void WaitForNoInvalidationLocked()
    {
        while (_seq.InProgressLocked > 0)
        {
            _mmuLock.Exit();
            Thread.Yield();
            _mmuLock.Enter();
        }
    }

    /// <summary>The shootdown of EptMmu, with this MMU's vCPUs and counters.</summary>
    private void FlushLocked(ulong holders, ulong firstGfn, ulong lastGfn)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "a shootdown runs with the MMU lock held");
        VcpuShootdown.FlushLocked(_vcpus, Events, ref _shootdowns, holders, firstGfn, lastGfn);
    }

    void IRemoteTlbFlush.FlushRemoteTlbsLocked(ulong holders, ulong firstGfn, ulong lastGfn) => FlushLocked(holders, firstGfn, lastGfn);

    /// <summary>An entry that mapped <paramref name="frame"/> is gone: the protocol takes back what it held (a pin, under pin).</summary>
    private void DropMappingLocked(Hfn frame)
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
        if (Interlocked.Read(ref _pinned) == 0) return;
        var zap = new ZapHandler(this, contentsChange: true);
        _walker.Walk(new HvaRangeWalk(new Hva(0), new Hva(ulong.MaxValue), FlushOnReturn: true), ref zap);
    }
}
