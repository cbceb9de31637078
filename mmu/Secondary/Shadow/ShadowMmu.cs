using System.Diagnostics;

namespace ToyVmm.Mmu.Secondary.Shadow;

// Lock order (mmu/LOCKING.md): the core's (SecondaryMmuCore.cs). Its
// _mmuLock also guards every shadow page (links, leaf entries, parents), the
// page hash, the write-protected frame index, the reverse map, the root cache
// and _counts; the checker's lock is a leaf.
//
// The fault/invalidate protocol is the core's (see its diagram, and
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
public sealed unsafe partial class ShadowMmu : SecondaryMmuCore, IShadowPaging
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

    private ShadowCounts _counts;                // guarded by _mmuLock; read racily for reports

    /// <param name="maxPages">The bound on live shadow pages; 0 for <see cref="DefaultMaxPages"/>.</param>
    public ShadowMmu(IHostMemory host, ulong ramBytes, Hva ramHva, int maxRoots = DefaultMaxRoots, int maxPages = 0)
        : base(host, ramBytes, ramHva)
    {
        if (maxRoots < 1) throw new ArgumentOutOfRangeException(nameof(maxRoots), maxRoots, "the root cache needs room for one root");
        // Roots are never recycled: the bound must leave room for every root and one walk below one.
        if (maxPages != 0 && maxPages < maxRoots + 5)
            throw new ArgumentOutOfRangeException(nameof(maxPages), maxPages, $"the shadow-page bound needs room for {maxRoots} roots and one walk ({maxRoots + 5})");
        MaxRoots = maxRoots;
        MaxPages = maxPages != 0 ? maxPages : DefaultMaxPages(ramBytes, maxRoots);
        Register();
    }

    public int MaxRoots { get; }
    /// <summary>Live shadow pages at most; creating one beyond it recycles the least recently used.</summary>
    public int MaxPages { get; }
    /// <summary>The direct role's table (guest-physical accesses), for tests.</summary>
    public EptTable DirectTable => _gfnTable;

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

    /// <summary>Install the direct-role entry of a guest-physical fault (the protocol has let it).</summary>
    private protected override bool InstallDirectLocked(VcpuLink vcpu, Gpa gpa, Hfn frame, bool write, out bool newMapping)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "installing needs the MMU lock");
        ulong gfn = gpa.PageNumber;
        // A guest-physical write to a shadowed page table (the loader, paging off) cannot be
        // trapped afterwards: drop its shadow pages first, so nothing derived from it remains.
        if (write && IsWriteProtectedLocked(gfn)) UnshadowLocked(gfn);
        var entry = _gfnTable.Lookup(gfn);
        bool same = entry.IsPresent && entry.Frame == frame;
        bool writable = (write || (same && entry.IsWritable)) && !IsWriteProtectedLocked(gfn);
        ulong used = EptEntry.Accessed | (write ? EptEntry.Dirty : 0) | EptEntry.VcpuBit(vcpu.Index);
        var fresh = EptEntry.Make(frame, writable, executable: true)
            .With(used | (same ? entry.Raw & (EptEntry.VcpuMask | EptEntry.Dirty) : 0));
        if (entry.IsPresent && !same)   // only under broken-2008: the checker judges the stale one
        {
            ulong holders = ZapGfnLocked(gfn);
            if (holders != 0) FlushVcpusLocked(holders, gfn, gfn);
        }
        if (!same) NoteMappedLocked(gfn, frame, null, 0);
        _gfnTable.SetLocked(gfn, fresh);
        newMapping = !same;
        return true;
    }
}
