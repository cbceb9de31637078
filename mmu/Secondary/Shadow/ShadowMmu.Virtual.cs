using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace ToyVmm.Mmu.Secondary.Shadow;

// Guest-virtual translation (IShadowPaging): the lock-free hit path through
// the shadow tables, and the fill after a miss. See the diagram in ShadowMmu.cs.
public sealed unsafe partial class ShadowMmu
{
    private const ulong PhysMask = 0x000F_FFFF_FFFF_F000;
    private const ulong PteRw = 2, PteUs = 4, PteA = 0x20, PteD = 0x40;

    public VirtualStatus TranslateVirtual(VcpuLink vcpu, ShadowContext context, ulong va, AccessKind kind, bool user, bool wp,
        out byte* hostPage, out ulong gpa)
    {
        hostPage = null;
        gpa = 0;
        var page = context.Root;
        if (page is null || !page.Valid) return VirtualStatus.Miss;
        for (int level = 4; level > 1; level--)
        {
            page = Volatile.Read(ref page.Children![(int)((va >> (12 + 9 * (level - 1))) & 511)]);
            if (page is null) return VirtualStatus.Miss;
        }
        int index = (int)((va >> 12) & 511);
        ref ulong slot = ref page.Leaf![index];
        ulong entry = Volatile.Read(ref slot);
        if (!ShadowEntry.Permits(entry, kind, user, wp)) return VirtualStatus.Miss;
        // As EPT's hit path: the vCPU is about to cache the page, so it becomes a holder (and
        // sets A/D) before the pointer leaves; a zap racing with this sees the bit, or the
        // update fails and the vCPU walks again.
        ulong want = EptEntry.Accessed | (kind == AccessKind.Write ? EptEntry.Dirty : 0) | EptEntry.VcpuBit(vcpu.Index);
        if (!TrySetBits(ref slot, entry, want)) return VirtualStatus.Miss;
        ulong gfn = Volatile.Read(ref page.LeafGfn![index]);
        var frame = new EptEntry(entry).Frame;
        gpa = gfn << 12;
        var checker = Checker;
        if (checker is not null)
        {
            var slotOf = _slots.Find(new Gpa(gpa));
            if (slotOf is not null) checker.OnTlbFill(_host, vcpu.Index, new Gpa(gpa), slotOf.ToHva(new Gpa(gpa)), frame);
        }
        // SAFETY: the entry is present, so the frame stays allocated until an invalidation zaps
        // it through the reverse map, and that invalidation waits for this vCPU's flush.
        hostPage = _host.FrameAddress(frame);
        return VirtualStatus.Ok;
    }

    /// <summary>OR <paramref name="bits"/> into a leaf entry that still maps the frame the caller saw (EptTable.TrySetBits for shadow leaves).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool TrySetBits(ref ulong slot, ulong seen, ulong bits)
    {
        ulong cur = seen;
        while (true)
        {
            if ((cur & bits) == bits) return true;
            ulong prev = Interlocked.CompareExchange(ref slot, cur | bits, cur);
            if (prev == cur) return true;
            if ((prev & EptEntry.Read) == 0 || new EptEntry(prev).Frame != new EptEntry(seen).Frame) return false;
            cur = prev;
        }
    }

    public VirtualStatus FillVirtual(VcpuLink vcpu, ShadowContext context, ulong va, in GuestWalk walk, AccessKind kind,
        out byte* hostPage, out bool writeTrap)
    {
        var install = new VirtualInstall(this, context, va, walk);
        var outcome = Fault(vcpu, new Gpa(walk.Gpa & PhysMask), kind, ref install, out var frame);
        writeTrap = outcome == FaultOutcome.Ok && install.Trap;
        // SAFETY: the leaf is installed under the protocol; see TranslateVirtual.
        hostPage = outcome == FaultOutcome.Ok ? _host.FrameAddress(frame) : null;
        return outcome switch
        {
            FaultOutcome.Ok => VirtualStatus.Ok,
            FaultOutcome.Refused => VirtualStatus.Retry,
            FaultOutcome.Unbacked => VirtualStatus.Unbacked,
            FaultOutcome.Protection => VirtualStatus.Protection,
            _ => VirtualStatus.HostError,
        };
    }

    /// <summary>The guest-virtual fill of the core's secondary fault: may refuse when the walk went stale.</summary>
    private struct VirtualInstall(ShadowMmu mmu, ShadowContext context, ulong va, GuestWalk walk) : IFaultInstall
    {
        public bool Trap;
        private GuestWalk _walk = walk;

        public bool InstallLocked(VcpuLink vcpu, Gpa gpa, Hfn frame, bool write, out bool newMapping) =>
            mmu.InstallVirtualLocked(vcpu, context, va, ref _walk, frame, write, out Trap, out newMapping);
    }

    /// <summary>The shadow pages along one walk, top first (at most 4 guest levels plus a direct level).</summary>
    [InlineArray(5)]
    private struct PathPages { private ShadowPage? _first; }

    /// <summary>
    /// Under the MMU lock, after the protocol's re-check: find or build the shadow
    /// pages of the walk (write-protecting their guest frames), re-read every guest
    /// entry the walk used and refuse if one changed, then link the path and install
    /// the leaf. <paramref name="trap"/>: the page itself is a shadowed page table.
    /// </summary>
    private bool InstallVirtualLocked(VcpuLink vcpu, ShadowContext context, ulong va, ref GuestWalk walk, Hfn frame, bool write, out bool trap, out bool newMapping)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "installing needs the MMU lock");
        trap = false;
        newMapping = false;
        bool nxe = context.Nxe;
        var pages = new PathPages();
        int count = 1;
        pages[0] = RootLocked(context);
        ulong access = pages[0]!.Role.Access;
        // 1. The pages of the path; new ones write-protect their guest table (and flush).
        for (int i = 0; i < walk.Depth; i++)
        {
            int level = 4 - i;
            ulong e = walk.Entry[i];
            if ((e & PteUs) == 0) access &= ~ShadowEntry.GuestUser;
            if ((e & PteRw) == 0) access &= ~ShadowEntry.GuestWrite;
            if (nxe && (long)e < 0) access |= ShadowEntry.GuestNoExec;
            if (i + 1 < walk.Depth)
            {
                pages[count++] = GetOrCreateLocked(walk.EntryGpa[i + 1] >> 12, new ShadowRole(level - 1, access, nxe, Direct: false));
                continue;
            }
            if (level == 1) break;
            // A guest large page (2 MiB at level 2, 1 GiB at level 3): direct pages map it in 4 KiB pieces.
            ulong baseGfn = ((e & PhysMask) >> 12) & ~((1UL << (9 * (level - 1))) - 1);
            if (level == 3)
            {
                pages[count++] = GetOrCreateLocked(baseGfn, new ShadowRole(2, access, nxe, Direct: true));
                baseGfn += ((va >> 21) & 511) << 9;
            }
            pages[count++] = GetOrCreateLocked(baseGfn, new ShadowRole(1, access, nxe, Direct: true));
        }
        // Building the path may have evicted a root or zapped pages: the path must still stand.
        for (int i = 0; i < count; i++)
            if (!pages[i]!.Valid) { _counts.FillRetries++; return false; }
        // 2. The walk must still hold now that its tables are write-protected (FNAME(gpte_changed)).
        for (int i = 0; i < walk.Depth; i++)
        {
            ulong entryGpa = walk.EntryGpa[i];
            var table = _gfnTable.Lookup(entryGpa >> 12);
            if (!table.IsPresent) { _counts.FillRetries++; return false; }   // the host took the table page: walk again
            // SAFETY: the direct entry is present and we hold the MMU lock, so no invalidation
            // can zap it and let the host free the frame while we read.
            ulong now = Volatile.Read(ref *(ulong*)(_host.FrameAddress(table.Frame) + (entryGpa & 0xFFF)));
            if (((now ^ walk.Entry[i]) & ~(PteA | PteD)) != 0) { _counts.FillRetries++; return false; }
        }
        // 3. Link the path, 4. install the leaf.
        bool relinked = false;
        for (int i = 0; i + 1 < count; i++)
        {
            int level = pages[i]!.Role.Level;
            relinked |= LinkLocked(pages[i]!, (int)((va >> (12 + 9 * (level - 1))) & 511), pages[i + 1]!);
        }
        if (relinked) FlushVcpusLocked(ulong.MaxValue, 0, ulong.MaxValue);
        var leaf = pages[count - 1]!;
        Debug.Assert(leaf.Role.Level == 1, "a walk ends at a level-1 shadow page");
        int index = (int)((va >> 12) & 511);
        ulong gfn = walk.Gpa >> 12;
        ulong old = leaf.Leaf![index];
        bool same = (old & EptEntry.Read) != 0 && new EptEntry(old).Frame == frame && leaf.LeafGfn![index] == gfn;
        if ((old & EptEntry.Read) != 0 && !same)
        {
            ulong stale = leaf.LeafGfn![index];
            ulong holders = ZapLeafLocked(leaf, index);
            if (holders != 0) FlushVcpusLocked(holders, stale, stale);
        }
        bool guarded = IsWriteProtectedLocked(gfn);
        bool writable = !guarded && (write || (same && (old & EptEntry.Write) != 0));
        ulong raw = ((ulong)frame.Value << 12) | EptEntry.Read | (writable ? EptEntry.Write : 0) | access
            | EptEntry.Accessed | (write ? EptEntry.Dirty : 0) | EptEntry.VcpuBit(vcpu.Index)
            | (same ? old & (EptEntry.VcpuMask | EptEntry.Dirty) : 0);
        if (!same)
        {
            leaf.LeafGfn![index] = gfn;   // before the entry: a reader that sees the entry reads this gfn
            leaf.Used++;
            NoteMappedLocked(gfn, frame, leaf, index);
        }
        // Same mapping: only add bits, so a holder bit a vCPU ORs in meanwhile is kept.
        if (same) Interlocked.Or(ref leaf.Leaf[index], raw);
        else Volatile.Write(ref leaf.Leaf[index], raw);
        _counts.Fills++;
        trap = write && guarded;
        newMapping = !same;
        return true;
    }
}
