using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Mmu.Secondary.Shadow;
using Xunit;
using Xunit.Abstractions;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Secondary.Shadow;

/// <summary>
/// What only the shadow MMU has (docs/DESIGN.md "The shadow MMU"): guest page
/// tables it builds shadow pages from, write-protect traps, the root cache, the
/// reverse map under host invalidation, and the 2008 schedule through a
/// guest-virtual fill. The test plays the vCPU: it writes guest page tables
/// through the direct role and walks them itself, as PageWalk.cs does.
/// </summary>
public sealed unsafe class ShadowMmuTests(ITestOutputHelper output) : IDisposable
{
    private const int RamPages = 64;
    private const ulong Ram = RamPages * Page.Size;
    // Guest page tables: two PML4s (two address spaces) sharing one PDPT, PD and PT.
    private const ulong Pml4A = 0x1000, Pml4B = 0x2000, Pdpt = 0x3000, Pd = 0x4000, Pt = 0x5000;
    private const ulong Va = 0x4000_0000 + 0x7000;   // PML4 index 0, PDPT 1, PD 0, PT 7

    private HostMemory _host = null!;
    private HostAddressSpace _mm = null!;
    private Hva _ram;
    private ShadowMmu _mmu = null!;
    private MmuInvariantChecker _checker = null!;
    private readonly VcpuLink _vcpu = new(0);
    private readonly ShadowContext _context = new();

    private void Make(NotifierProtocol protocol = NotifierProtocol.Sequence, int maxPages = 0)
    {
        _checker = new MmuInvariantChecker();
        _checker.WatchVcpus(() => [_vcpu]);
        _host = NewHost(256);
        _mm = _host.CreateAddressSpace();
        _mm.Notifiers.Protocol = NotifierProtocols.Of(protocol);
        _ram = _mm.Map(Ram, HostProtection.ReadWrite);
        _host.FrameFreed = _checker.OnFrameFree;
        _mmu = new ShadowMmu(new SecondaryHostBinding(_mm), Ram, _ram, maxRoots: 1, maxPages) { Checker = _checker };
        _mmu.AttachVcpu(_vcpu);
        // Both roots map Va through the same tables, user and writable.
        SetEntry(Pml4A, 0, Pdpt | 7);
        SetEntry(Pml4B, 0, Pdpt | 7);
        SetEntry(Pdpt, 1, Pd | 7);
        SetEntry(Pd, 0, Pt | 7);
        SetEntry(Pt, 7, DataPage(0x20) | 7);
        _context.Reset(Pml4A, nxe: true);
    }

    private static ulong DataPage(int page) => (ulong)page << 12;

    private void SetEntry(ulong table, int index, ulong value)
    {
        // A guest-physical write, as a vCPU with paging off or the loader makes it.
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, new Gpa(table), AccessKind.Write, out byte* p));
        *(ulong*)(p + index * 8) = value;
        TakeFlushes();
    }

    private void TakeFlushes()
    {
        if (_vcpu.TakeRequests() != 0) _vcpu.AcknowledgeFlush();
    }

    /// <summary>The guest walk of <paramref name="va"/> (4 KiB pages only), recorded as PageWalk.cs records it.</summary>
    private GuestWalk Walk(ulong va)
    {
        var walk = new GuestWalk();
        ulong table = _context.Cr3;
        for (int level = 4; level >= 1; level--)
        {
            ulong entryGpa = table + ((va >> (12 + 9 * (level - 1))) & 511) * 8;
            Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, new Gpa(entryGpa & ~0xFFFUL), AccessKind.Read, out byte* p));
            ulong e = *(ulong*)(p + (entryGpa & 0xFFF));
            Assert.True((e & 1) != 0, $"level {level} entry not present");
            walk.EntryGpa[4 - level] = entryGpa;
            walk.Entry[4 - level] = e;
            walk.Depth = 5 - level;
            table = e & 0x000F_FFFF_FFFF_F000;
        }
        walk.Gpa = table;
        return walk;
    }

    /// <summary>Translate <paramref name="va"/> as a vCPU does: the shadow tables, then walk and fill on a miss.</summary>
    private VirtualStatus Access(ulong va, AccessKind kind, out ulong gpa, out bool trap)
    {
        trap = false;
        var st = _mmu.TranslateVirtual(_vcpu, _context, va, kind, user: true, wp: true, out _, out gpa);
        if (st != VirtualStatus.Miss) return st;
        // A fill that write-protects a table takes its direct entry away, and the re-check
        // then sends the vCPU back to walk (which faults the table in read-only): loop as it does.
        for (int tries = 0; tries < 8; tries++)
        {
            var walk = Walk(va);
            gpa = walk.Gpa;
            st = _mmu.FillVirtual(_vcpu, _context, va, in walk, kind, out _, out trap);
            TakeFlushes();
            if (st != VirtualStatus.Retry) return st;
        }
        return st;
    }

    private bool Hits(ulong va, AccessKind kind = AccessKind.Read) =>
        _mmu.TranslateVirtual(_vcpu, _context, va, kind, user: true, wp: true, out _, out _) == VirtualStatus.Ok;

    public void Dispose()
    {
        _mmu?.Dispose();
        _mm?.Dispose();
        _host?.Dispose();
    }

    [Fact]
    public void FillVirtual_AfterAMiss_MapsTheGuestVirtualPageStraightToItsFrame()
    {
        Make();
        Assert.False(Hits(Va));
        Assert.Equal(VirtualStatus.Ok, Access(Va, AccessKind.Write, out ulong gpa, out bool trap));
        Assert.False(trap);
        Assert.Equal(DataPage(0x20), gpa);
        Assert.True(Hits(Va, AccessKind.Write));
        Assert.True(_mmu.TryLookup(new Gpa(gpa), out var frame, out bool dirty));
        Assert.True(dirty);
        Assert.True(_mm.FrameBacks(frame, _ram.Add(gpa)));
        Assert.Equal(0, _checker.ViolationCount);
    }

    [Fact]
    public void PageTableWritten_GuestChangesTheLeafEntry_TrapsZapsAndTheNextAccessSeesTheNewPage()
    {
        Make();
        Assert.Equal(VirtualStatus.Ok, Access(Va, AccessKind.Read, out _, out _));
        // The PT page is shadowed now: a write to it through a guest-virtual mapping traps.
        ulong ptVa = 0x4000_0000 + 0x9000;
        SetEntry(Pt, 9, Pt | 7);   // the guest maps its own PT at ptVa
        Assert.Equal(VirtualStatus.Ok, Access(ptVa, AccessKind.Write, out ulong ptGpa, out bool trap));
        Assert.Equal(Pt, ptGpa);
        Assert.True(trap, "a write to a shadowed guest page table traps");
        Assert.False(Hits(ptVa, AccessKind.Write));   // never writable in the shadow
        Assert.Equal(VirtualStatus.Ok, Access(Va, AccessKind.Read, out _, out _));   // (the guest-physical write above unshadowed the PT)
        Assert.True(Hits(Va));
        // The guest rewrites the PTE of Va (through the trapped pointer), then the MMU zaps it.
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, new Gpa(Pt), AccessKind.Read, out byte* p));
        *(ulong*)(p + 7 * 8) = DataPage(0x21) | 7;
        _mmu.PageTableWritten(_vcpu, Pt + 7 * 8, 8);
        TakeFlushes();
        Assert.False(Hits(Va));
        Assert.Equal(VirtualStatus.Ok, Access(Va, AccessKind.Read, out ulong gpa, out _));
        Assert.Equal(DataPage(0x21), gpa);
        var counts = _mmu.Counts;
        output.WriteLine(counts.ToString());
        Assert.Equal(1, counts.WriteProtectTraps);
        Assert.True(counts.TrapZaps >= 1);
        Assert.Equal(0, _checker.ViolationCount);
    }

    [Fact]
    public void FillVirtual_GuestEntryChangedAfterTheWalk_RefusesAndTheVcpuWalksAgain()
    {
        Make();
        var walk = Walk(Va);
        SetEntry(Pt, 7, DataPage(0x22) | 7);   // changed between the walk and the fill
        Assert.Equal(VirtualStatus.Retry, _mmu.FillVirtual(_vcpu, _context, Va, in walk, AccessKind.Read, out _, out _));
        Assert.False(Hits(Va));
        Assert.True(_mmu.Counts.FillRetries >= 1);
        Assert.Equal(VirtualStatus.Ok, Access(Va, AccessKind.Read, out ulong gpa, out _));
        Assert.Equal(DataPage(0x22), gpa);
    }

    [Fact]
    public void Cr3Switch_BackToACachedRoot_ReusesItsShadowPages()
    {
        Make();
        _mmu.Dispose();
        _mmu = new ShadowMmu(new SecondaryHostBinding(_mm), Ram, _ram, maxRoots: 4) { Checker = _checker };
        _mmu.AttachVcpu(_vcpu);
        Assert.Equal(VirtualStatus.Ok, Access(Va, AccessKind.Read, out _, out _));
        long built = _mmu.Counts.PagesCreated;
        _context.Reset(Pml4B, nxe: true);
        Assert.Equal(VirtualStatus.Ok, Access(Va, AccessKind.Read, out _, out _));
        Assert.Equal(built + 1, _mmu.Counts.PagesCreated);   // only B's root: the PDPT, PD and PT pages are shared
        _context.Reset(Pml4A, nxe: true);
        Assert.False(Hits(Va));                               // a CR3 write leaves the vCPU without a root until its next fill
        Assert.Equal(VirtualStatus.Ok, Access(Va, AccessKind.Read, out _, out _));
        var counts = _mmu.Counts;
        Assert.Equal(built + 1, counts.PagesCreated);
        Assert.Equal(2, counts.RootsCached);
        Assert.True(counts.RootHits >= 1);
    }

    [Fact]
    public void RootCache_BeyondItsBound_EvictsTheLeastRecentlyUsedRoot()
    {
        Make();   // maxRoots: 1
        Assert.Equal(VirtualStatus.Ok, Access(Va, AccessKind.Read, out _, out _));
        var rootA = _context.Root;
        _context.Reset(Pml4B, nxe: true);
        Assert.Equal(VirtualStatus.Ok, Access(Va, AccessKind.Read, out _, out _));
        Assert.False(rootA!.Valid);
        Assert.Equal(1, _mmu.Counts.RootsCached);
        Assert.Equal(0, _checker.ViolationCount);
    }

    [Fact]
    public void CreatePage_BeyondTheBound_RecyclesTheLeastRecentlyUsedAndTranslationsStayCorrect()
    {
        const int bound = 8, tables = 24;
        Make(maxPages: bound);
        // 24 more guest page tables under the shared PD (entries 1..24), each mapping one data
        // page: with the root, PDPT and PD that is 27 shadow pages wanted, over three times the bound.
        static ulong TableGpa(int i) => (ulong)(0x08 + i) << 12;
        static ulong VaOf(int i) => 0x4000_0000 + ((ulong)(i + 1) << 21) + 0x3000;
        for (int i = 0; i < tables; i++)
        {
            SetEntry(TableGpa(i), 3, DataPage(0x20 + i) | 7);
            SetEntry(Pd, i + 1, TableGpa(i) | 7);
        }
        for (int round = 0; round < 2; round++)
        {
            for (int i = 0; i < tables; i++)
            {
                Assert.Equal(VirtualStatus.Ok, Access(VaOf(i), AccessKind.Read, out ulong gpa, out _));
                Assert.Equal(DataPage(0x20 + i), gpa);
                Assert.True(_mmu.Counts.PagesLive <= bound, $"{_mmu.Counts.PagesLive} shadow pages live, bound {bound}");
            }
        }
        // A recycled table no longer traps: a write to it goes through and the next walk sees it.
        SetEntry(TableGpa(0), 3, DataPage(0x3F) | 7);
        Assert.Equal(VirtualStatus.Ok, Access(VaOf(0), AccessKind.Read, out ulong moved, out _));
        Assert.Equal(DataPage(0x3F), moved);
        var counts = _mmu.Counts;
        Assert.True(counts.PagesRecycled >= 2 * tables - bound, $"{counts.PagesRecycled} recycled");
        Assert.Equal(counts.PagesCreated - counts.PagesZapped, counts.PagesLive);
        Assert.Equal(1, counts.RootsCached);
        Assert.Equal(0, _checker.ViolationCount);
    }

    [Fact]
    public void Constructor_BoundWithoutRoomForTheRootsAndOneWalk_IsRefused()
    {
        Make();
        Assert.Throws<ArgumentOutOfRangeException>(() => new ShadowMmu(new SecondaryHostBinding(_mm), Ram, _ram, maxRoots: 4, maxPages: 8));
    }

    [Fact]
    public void HostInvalidation_OfAMappedPage_ZapsItsShadowEntriesThroughTheReverseMapAndFlushes()
    {
        Make();
        Assert.Equal(VirtualStatus.Ok, Access(Va, AccessKind.Write, out ulong gpa, out _));
        _vcpu.EnterGuest();
        _vcpu.TakeRequests();
        var drop = new Thread(() => _mm.DontNeed(_ram.Add(gpa), Page.Size));
        drop.Start();
        // The vCPU, in guest mode, acknowledges the flush the invalidation posted.
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (drop.IsAlive && DateTime.UtcNow < deadline)
        {
            if (_vcpu.HasRequests) { _vcpu.TakeRequests(); _vcpu.AcknowledgeFlush(); }
            Thread.Yield();
        }
        Assert.True(drop.Join(TimeSpan.FromSeconds(20)));
        _vcpu.ExitGuest();
        Assert.False(Hits(Va));
        Assert.False(_mmu.TryLookup(new Gpa(gpa), out _, out _));
        Assert.Equal(0, _checker.ViolationCount);
    }

    [Fact]
    public void HostInvalidation_OfAPageMappedAtTwoAddressesAndDirectly_ZapsEveryEntryOfItsReverseMap()
    {
        // Three entries of one guest frame: its rmap word names one leaf, the spill list the
        // other, and its direct bit the guest-physical entry. The invalidation must find all three.
        Make();
        SetEntry(Pt, 8, DataPage(0x20) | 7);
        const ulong other = Va + Page.Size;
        Assert.Equal(VirtualStatus.Ok, Access(Va, AccessKind.Write, out ulong gpa, out _));
        Assert.Equal(VirtualStatus.Ok, Access(other, AccessKind.Read, out ulong gpa2, out _));
        Assert.Equal(gpa, gpa2);
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, new Gpa(gpa), AccessKind.Read, out _));
        Assert.Equal(2, _mmu.LeafEntries());

        _mm.DontNeed(_ram.Add(gpa), Page.Size);   // the vCPU is outside guest mode: nothing to wait for
        TakeFlushes();

        Assert.False(Hits(Va));
        Assert.False(Hits(other));
        Assert.False(_mmu.DirectTable.Lookup(gpa >> 12).IsPresent);
        Assert.False(_mmu.TryLookup(new Gpa(gpa), out _, out _));
        Assert.Equal(0, _mmu.LeafEntries());
        Assert.Equal(0, _checker.ViolationCount);
    }

    [Theory]
    [InlineData(NotifierProtocol.Broken2008, true)]
    [InlineData(NotifierProtocol.Sequence, false)]
    public void FillVirtual_RacingReclaimOfTheDataPage_CheckerCatchesOnlyTheBrokenProtocol(NotifierProtocol protocol, bool expectViolation)
    {
        Make(protocol);
        Assert.Equal(VirtualStatus.Ok, Access(Va, AccessKind.Read, out _, out _));   // the tables shadowed and faulted back in
        var walk = Walk(Va);
        int calls = 0;
        _mmu.AfterGetUserPageHook = (gpa, _) =>
        {
            if (gpa.Value != walk.Gpa || Interlocked.Increment(ref calls) != 1) return;
            var reclaim = new Thread(() => _mm.DontNeed(_ram.Add(gpa.Value), Page.Size));
            reclaim.Start();
            Assert.True(reclaim.Join(TimeSpan.FromSeconds(20)));
        };
        Assert.Equal(VirtualStatus.Ok, _mmu.FillVirtual(_vcpu, _context, Va, in walk, AccessKind.Write, out _, out _));
        output.WriteLine(_checker.FirstViolation?.ToString() ?? "no violation");
        Assert.Equal(expectViolation, _checker.ViolationCount > 0);
        if (!expectViolation)
        {
            Assert.True(calls >= 2, "the fill dropped its first page and retried");
            Assert.True(_mmu.TryLookup(new Gpa(walk.Gpa), out var frame, out _));
            Assert.True(_mm.FrameBacks(frame, _ram.Add(walk.Gpa)));
        }
    }
}
