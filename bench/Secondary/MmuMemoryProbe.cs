using ToyVmm.Mmu;
using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Mmu.Secondary.Shadow;
using ToyVmm.Vm;

namespace ToyVmm.Bench.Secondary;

/// <summary>
/// Memory the secondary MMU's structures take per mapped 4 KiB page, measured:
/// the managed heap's growth across mapping N pages (after a full collection each
/// side), divided by N, for EPT and for the shadow MMU.
/// Run: <c>ToyVmm.Bench mmu-memory [ept|shadow|both] [pages...]</c> (both and 4096 65536 262144 by default).
/// </summary>
/// <remarks>
/// Everything the MMU's own data would not be is done before the first reading:
/// the host pages (data and guest page tables) are faulted in through the host
/// address space, and for the shadow MMU the guest page tables are written. So the
/// growth is what the mapping itself keeps: EPT's tables, or the shadow pages, their
/// parent lists, the reverse map and the direct-role entries of the page-table pages.
/// Neither table allocates native memory (EptTable and ShadowPage are managed arrays),
/// so the managed heap is all of it. EPT maps guest-physical pages (Translate, as a
/// vCPU with paging off or the loader does); the shadow MMU maps guest-virtual pages
/// through its miss, guest walk and fill, as a vCPU with paging on does
/// (tests/ToyVmm.Mmu.Tests/Secondary/Shadow/ShadowMmuTests.cs plays the vCPU the same way).
/// </remarks>
public static unsafe class MmuMemoryProbe
{
    private const ulong TableArea = 4UL << 20;      // guest page tables live below the data pages
    private const ulong VaBase = 1UL << 30;         // PML4 index 0, PDPT index 1 onwards
    private const ulong Pml4 = 0x1000, Pdpt = 0x2000, FirstPd = 0x3000;
    private const ulong PresentWritableUser = 7;

    /// <returns>The process exit status: 0, 1 if a mapping failed, or 2 for a bad argument.</returns>
    public static int Run(string[] args)
    {
        SecondaryMmuKind[] kinds = [SecondaryMmuKind.Ept, SecondaryMmuKind.Shadow];
        int next = 0;
        if (args.Length > 0 && !int.TryParse(args[0], out _))
        {
            if (args[0].Equals("both", StringComparison.OrdinalIgnoreCase)) { }
            else if (Enum.TryParse(args[0], ignoreCase: true, out SecondaryMmuKind one)) kinds = [one];
            else
            {
                Console.Error.WriteLine($"mmu-memory: the MMU is ept, shadow or both, not '{args[0]}'");
                return 2;
            }
            next = 1;
        }
        var sizes = new List<int>();
        foreach (var a in args[next..])
        {
            // One PD (512 x 512 pages) at most: the guest tables below are built for that.
            if (!int.TryParse(a, out int n) || n <= 0 || n > 512 * 512)
            {
                Console.Error.WriteLine($"mmu-memory: pages must be an integer from 1 to 262144, not '{a}'");
                return 2;
            }
            sizes.Add(n);
        }
        if (sizes.Count == 0) sizes.AddRange([4096, 65536, 262144]);

        Console.WriteLine($"MMU memory probe: managed heap growth (GC.GetTotalMemory(true)) across mapping N 4 KiB pages, {Environment.ProcessorCount} cores, {Environment.Version}");
        Console.WriteLine($"  {"mmu",-7} {"pages",8} {"retained",14} {"B/page",8} {"allocated",14} {"B/page",8} {"remap B",8} {"shadow pages",12}");
        foreach (int n in sizes)
            foreach (var kind in kinds)
            {
                var r = Measure(kind, n);
                if (r is not { } m) return 1;
                Console.WriteLine($"  {kind.ToString().ToLowerInvariant(),-7} {n,8} {m.Retained,14:N0} {(double)m.Retained / n,8:F1} " +
                                  $"{m.Allocated,14:N0} {(double)m.Allocated / n,8:F1} {m.Remap,8:N0} {(kind == SecondaryMmuKind.Shadow ? m.ShadowPages.ToString("N0") : "-"),12}");
                if (m.Remap != 0)
                    Console.WriteLine("    the second pass allocated: entries were lost between the passes (host reclaim?), so this row is not the mapping's alone");
            }
        Console.WriteLine("retained: heap growth kept after mapping; allocated: bytes allocated while mapping (this thread);");
        Console.WriteLine("remap B: bytes allocated by a second pass over the same pages (all hits), a check that the figures are the mapping's;");
        Console.WriteLine("shadow pages: shadow pages live after the mapping (every level, 512 entries each)");
        return 0;
    }

    private readonly record struct Result(long Retained, long Allocated, long Remap, long ShadowPages);

    private static Result? Measure(SecondaryMmuKind kind, int pages)
    {
        ulong ram = TableArea + (ulong)pages * Page.Size;
        using var memory = new HostBackedMemory(ram, 1, new GuestMemoryConfig(ram + (ram >> 2) + (8UL << 20), Measure: false, Mmu: kind));
        var vcpu = new VcpuLink(0);
        var context = new ShadowContext();
        // The host side first, so its page tables and frames are not counted.
        for (ulong gpa = 0; gpa < ram; gpa += Page.Size)
            if (memory.Space.Fault(memory.RamHva.Add(gpa), write: true) != HostFaultStatus.Ok)
            {
                Console.Error.WriteLine($"mmu-memory: the host could not fault in guest page 0x{gpa:x}");
                return null;
            }
        if (kind == SecondaryMmuKind.Shadow)
        {
            if (!WriteGuestTables(memory.Mmu, vcpu, pages)) return null;
            context.Reset(Pml4, nxe: true);
        }

        long before = Settle();
        long alloc0 = GC.GetAllocatedBytesForCurrentThread();
        if (!MapAll(memory.Mmu, vcpu, context, kind, pages)) return null;
        long alloc1 = GC.GetAllocatedBytesForCurrentThread();
        long after = Settle();
        // A second pass: every page hits, so nothing should be allocated.
        long alloc2 = GC.GetAllocatedBytesForCurrentThread();
        if (!MapAll(memory.Mmu, vcpu, context, kind, pages)) return null;
        long alloc3 = GC.GetAllocatedBytesForCurrentThread();
        GC.KeepAlive(memory);
        return new Result(after - before, alloc1 - alloc0, alloc3 - alloc2, memory.ShadowCounts?.PagesLive ?? 0);
    }

    private static long Settle()
    {
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    private static bool MapAll(ISecondaryMmu mmu, VcpuLink vcpu, ShadowContext context, SecondaryMmuKind kind, int pages)
    {
        for (int i = 0; i < pages; i++)
        {
            bool ok = kind == SecondaryMmuKind.Ept
                ? mmu.Translate(vcpu, Gpa.FromPageNumber(DataGfn(i)), AccessKind.Write, out _) == TranslateStatus.Ok
                : Access((IShadowPaging)mmu, mmu, vcpu, context, VaBase + (ulong)i * Page.Size);
            TakeFlushes(vcpu);
            if (!ok)
            {
                Console.Error.WriteLine($"mmu-memory: mapping page {i} of {pages} failed ({kind})");
                return false;
            }
        }
        return true;
    }

    private static ulong DataGfn(int i) => (TableArea >> Page.Shift) + (ulong)i;

    /// <summary>PML4 -> PDPT -> PD -> PTs mapping VaBase + i pages to data page i, user and writable.</summary>
    private static bool WriteGuestTables(ISecondaryMmu mmu, VcpuLink vcpu, int pages)
    {
        int pts = (pages + 511) / 512;
        ulong pd = FirstPd, firstPt = FirstPd + Page.Size;
        if (firstPt + (ulong)pts * Page.Size > TableArea) return false;
        if (!SetEntry(mmu, vcpu, Pml4, 0, Pdpt | PresentWritableUser)) return false;
        if (!SetEntry(mmu, vcpu, Pdpt, 1, pd | PresentWritableUser)) return false;
        for (int t = 0; t < pts; t++)
        {
            ulong pt = firstPt + (ulong)t * Page.Size;
            if (!SetEntry(mmu, vcpu, pd, t, pt | PresentWritableUser)) return false;
            for (int e = 0; e < 512 && t * 512 + e < pages; e++)
                if (!SetEntry(mmu, vcpu, pt, e, (DataGfn(t * 512 + e) << Page.Shift) | PresentWritableUser)) return false;
        }
        return true;
    }

    private static bool SetEntry(ISecondaryMmu mmu, VcpuLink vcpu, ulong table, int index, ulong value)
    {
        // A guest-physical write, as the loader makes it.
        if (mmu.Translate(vcpu, new Gpa(table), AccessKind.Write, out byte* p) != TranslateStatus.Ok) return false;
        *(ulong*)(p + index * 8) = value;
        TakeFlushes(vcpu);
        return true;
    }

    private static void TakeFlushes(VcpuLink vcpu)
    {
        if (vcpu.TakeRequests() != 0) vcpu.AcknowledgeFlush();
    }

    /// <summary>A vCPU's guest-virtual access: the shadow tables, then on a miss its own guest walk and a fill.</summary>
    private static bool Access(IShadowPaging shadow, ISecondaryMmu mmu, VcpuLink vcpu, ShadowContext context, ulong va)
    {
        if (shadow.TranslateVirtual(vcpu, context, va, AccessKind.Write, user: true, wp: true, out _, out _) == VirtualStatus.Ok)
            return true;
        // A fill that write-protects a guest table drops its direct entry, and the
        // re-check sends the vCPU back to walk: loop as the vCPU does.
        for (int tries = 0; tries < 8; tries++)
        {
            if (!Walk(mmu, vcpu, context.Cr3, va, out var walk)) return false;
            var st = shadow.FillVirtual(vcpu, context, va, in walk, AccessKind.Write, out _, out _);
            TakeFlushes(vcpu);
            if (st == VirtualStatus.Ok) return true;
            if (st != VirtualStatus.Retry) return false;
        }
        return false;
    }

    /// <summary>The guest walk of <paramref name="va"/> (4 KiB pages), recorded as PageWalk.cs records it.</summary>
    private static bool Walk(ISecondaryMmu mmu, VcpuLink vcpu, ulong cr3, ulong va, out GuestWalk walk)
    {
        walk = new GuestWalk();
        ulong table = cr3;
        for (int level = 4; level >= 1; level--)
        {
            ulong entryGpa = table + ((va >> (12 + 9 * (level - 1))) & 511) * 8;
            if (mmu.Translate(vcpu, new Gpa(entryGpa & ~0xFFFUL), AccessKind.Read, out byte* p) != TranslateStatus.Ok) return false;
            ulong e = *(ulong*)(p + (entryGpa & 0xFFF));
            if ((e & 1) == 0) return false;
            walk.EntryGpa[4 - level] = entryGpa;
            walk.Entry[4 - level] = e;
            walk.Depth = 5 - level;
            table = e & 0x000F_FFFF_FFFF_F000;
        }
        walk.Gpa = table;
        return true;
    }
}
