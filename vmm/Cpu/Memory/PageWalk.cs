using ToyVmm.Mmu.Secondary;
using ToyVmm.Mmu.Secondary.Shadow;

namespace ToyVmm.Cpu;

// The guest walk (docs/DESIGN.md "The two walks", step 1): GVA -> GPA through the
// guest's 4-level page tables at CR3, with 2 MiB and 1 GiB pages, U/S, R/W
// (honouring CR0.WP for supervisor writes), NX (with EFER.NXE), and the
// accessed / dirty bits set atomically (other vCPUs share the tables).
public sealed unsafe partial class Vcpu
{
    internal const ulong Cr0Pe = 1, Cr0Mp = 2, Cr0Em = 4, Cr0Ts = 8, Cr0Ne = 0x20, Cr0Wp = 1UL << 16, Cr0Am = 1UL << 18, Cr0Nw = 1UL << 29, Cr0Cd = 1UL << 30, Cr0Pg = 1UL << 31;
    internal const ulong EferSce = 1, EferLme = 1 << 8, EferLma = 1 << 10, EferNxe = 1 << 11;
    private const ulong PhysMask = 0x000F_FFFF_FFFF_F000;
    private const ulong PteP = 1, PteRw = 2, PteUs = 4, PteA = 0x20, PteD = 0x40, PtePs = 0x80;

    internal static bool Canonical(ulong va) => (ulong)((long)(va << 16) >> 16) == va;

    /// <summary>
    /// Walks the guest page tables for <paramref name="va"/>; returns the guest-physical address
    /// or throws #PF (#GP for a non-canonical address). "User" is the TLB's CPL bit, so implicit
    /// supervisor accesses (see <see cref="Supervisor{T}"/>) walk as supervisor.
    /// </summary>
    internal ulong Walk(ulong va, AccessKind kind) => Walk(va, kind, null);

    /// <summary><see cref="Walk(ulong, AccessKind)"/>, also recording each table entry read into <paramref name="record"/> when not null (the shadow MMU's fill).</summary>
    internal ulong Walk(ulong va, AccessKind kind, GuestWalk* record)
    {
        Span<ulong> space = stackalloc ulong[4];
        // Accessed bits are set level by level right after each entry is read (WalkOnce), and the
        // dirty bit right after the walk: each host pointer is used before the next HostPage call,
        // which may take a flush request and make earlier pointers stale.
        ulong gpa = WalkOnce(va, kind, out ulong* ptes, out int depth, space, record);
        if (kind == AccessKind.Write)
        {
            ulong* leaf = (ulong*)ptes[depth - 1];
            if ((Volatile.Read(ref *leaf) & PteD) == 0) Interlocked.Or(ref *leaf, PteD);
        }
        return gpa;
    }

    private ulong WalkOnce(ulong va, AccessKind kind, out ulong* ptesOut, out int depthOut, Span<ulong> pteSpace, GuestWalk* record)
    {
        if (!Canonical(va)) throw GuestFault.Gp();
        bool user = _s->TlbCplBit != 0;
        bool nxe = (_s->Efer & EferNxe) != 0;
        ulong table = _s->Cr3 & PhysMask;
        bool rw = true, us = true, nx = false;
        ulong* ptes = (ulong*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref pteSpace[0]);
        int depth = 0;
        ulong gpa = 0;
        uint err = (kind == AccessKind.Write ? 2u : 0) | (user ? 4u : 0) | (kind == AccessKind.Fetch && nxe ? 16u : 0);
        for (int level = 4; level >= 1; level--)
        {
            int shift = 12 + 9 * (level - 1);
            ulong entryGpa = table + ((va >> shift) & 511) * 8;
            ulong* pte = (ulong*)(HostPage(entryGpa & Mem.PageMask, AccessKind.Read, va) + (entryGpa & 0xFFF));
            ulong e = Volatile.Read(ref *pte);
            if ((e & PteP) == 0) throw new GuestFault(Vec.PF, err, true, va);
            if (record != null) { record->EntryGpa[depth] = entryGpa; record->Entry[depth] = e; record->Depth = depth + 1; }
            ptes[depth++] = (ulong)pte;
            if ((e & PteA) == 0) Interlocked.Or(ref *pte, PteA);
            // Done with this table's pointer: a checked read holds nothing now (MemorySlow.cs).
            if (_checkedRead) _s->AccessVa = AccessTranslating;
            rw &= (e & PteRw) != 0;
            us &= (e & PteUs) != 0;
            if (nxe && (long)e < 0) nx = true;
            bool large = (e & PtePs) != 0 && (level == 2 || level == 3);
            if ((e & PtePs) != 0 && level == 4) throw new GuestFault(Vec.PF, err | 1 | 8, true, va);
            if (level == 1 || large)
            {
                ulong size = 1UL << shift;
                gpa = ((e & PhysMask) & ~(size - 1)) | (va & (size - 1));
                break;
            }
            table = e & PhysMask;
        }
        bool fault = (user && !us)
            || (kind == AccessKind.Write && !rw && (user || (_s->Cr0 & Cr0Wp) != 0))
            || (kind == AccessKind.Fetch && nx);
        if (fault) throw new GuestFault(Vec.PF, err | 1, true, va);
        ptesOut = ptes;
        depthOut = depth;
        if (record != null) record->Gpa = gpa;
        return gpa;
    }

    /// <summary>Guest-virtual to guest-physical for tools and tests; null when not mapped.</summary>
    public ulong? TranslateForDebug(ulong va)
    {
        if ((_s->Cr0 & Cr0Pg) == 0) return va;
        try { return Walk(va, AccessKind.Read); }
        catch (GuestFault) { return null; }
    }
}
