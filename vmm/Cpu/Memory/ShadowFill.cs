using ToyVmm.Mmu.Secondary;
using ToyVmm.Mmu.Secondary.Shadow;

namespace ToyVmm.Cpu;

// The TLB fill through a shadow MMU (docs/DESIGN.md "The shadow MMU"): with
// paging on, a TLB miss asks the shadow tables first (one walk of its own
// instead of the guest walk plus a guest-physical translate); on a shadow miss
// the vCPU walks the guest tables itself (PageWalk.cs: #PF, A/D bits),
// recording each entry, and the MMU fills from that walk. A write to a guest
// page table the MMU write-protects is emulated like a write to decoded code:
// the pointer is used once, never cached in the write TLB, and after the
// write the MMU zaps what it changed (WriteSlow -> FinishPageTableWrites).
public sealed unsafe partial class Vcpu
{
    private readonly IShadowPaging? _shadow;
    private readonly ShadowContext _shadowContext = new();
    // Trapped page-table writes translated by the current WriteSlow, not yet reported (vCPU thread only).
    private int _trapCount;
    private ulong _trap0, _trap1, _trapVa0, _trapVa1;

    private byte* TranslateShadow(ulong va, AccessKind kind, out ulong gpa)
    {
        if (!Canonical(va)) throw GuestFault.Gp();
        bool nxe = (_s->Efer & EferNxe) != 0;
        if (_shadowContext.Cr3 != (_s->Cr3 & 0x000F_FFFF_FFFF_F000) || _shadowContext.Nxe != nxe)
            _shadowContext.Reset(_s->Cr3, nxe);
        bool user = _s->TlbCplBit != 0, wp = (_s->Cr0 & Cr0Wp) != 0;
        while (true)
        {
            bool trap = false;
            var st = _shadow!.TranslateVirtual(Link, _shadowContext, va, kind, user, wp, out byte* page, out gpa);
            if (st == VirtualStatus.Miss)
            {
                GuestWalk walk;
                Walk(va, kind, &walk);   // raises the guest's #PF; sets the guest's A/D bits
                st = _shadow.FillVirtual(Link, _shadowContext, va, in walk, kind, out page, out trap);
                gpa = walk.Gpa & Mem.PageMask;
            }
            if (FlushedSinceTranslate(st == VirtualStatus.Ok, gpa >> 12))
            {
                if (_checkedRead) _s->AccessVa = AccessTranslating;   // the pointer is dropped: a checked read holds nothing again
                continue;
            }
            if (st == VirtualStatus.Retry) continue;   // the guest tables changed under the fill: walk again
            if (st != VirtualStatus.Ok) throw ShadowError(st, gpa, va, kind);
            if (kind == AccessKind.Fetch) return page + (va & 0xFFF);
            // A checked read uses the pointer only after the fill's look at the requests (MemorySlow.cs).
            if (_checkedRead) _s->AccessVa = AccessTranslating;
            if (trap)
            {
                // Not cached: the next write to this page table traps again.
                if (_trapCount == 0) (_trap0, _trapVa0) = (gpa, va); else (_trap1, _trapVa1) = (gpa, va);
                _trapCount = Math.Min(_trapCount + 1, 2);
                return page + (va & 0xFFF);
            }
            int slot = (kind == AccessKind.Write ? Mem.TlbSize : 0) + (int)((va >> 12) & Mem.TlbMask);
            TlbEntry* e = EntryOf(slot);
            e->Addend = (long)page - (long)(va & Mem.PageMask);
            e->Gpa = gpa;
            NoteSlotGfn(slot, e->Gpa >> 12);   // before the tag: ShootDown finds the slot by it
            e->Code = kind == AccessKind.Write ? _code.CodeFlag(gpa >> 12) : NoCode;
            Volatile.Write(ref e->Tag, (va & Mem.PageMask) | _s->TlbCplBit);
            IndexFill(slot, e->Gpa >> 12);
            Interlocked.MemoryBarrier();       // the entry before the requests (TlbShootdown.cs)
            if (!Link.HasRequests) return page + (va & 0xFFF);
            ServiceRequests();                 // a shootdown raced with the fill: drop it and translate again
        }
    }

    private Exception ShadowError(VirtualStatus st, ulong gpa, ulong va, AccessKind kind)
    {
        string k = kind.ToString().ToLowerInvariant();
        if (st == VirtualStatus.HostError)
            return new HostFailureException($"{k} access to guest-physical address 0x{gpa:x} (guest-virtual 0x{va:x}) at RIP 0x{CurrentRip:x}");
        string what = st == VirtualStatus.Unbacked ? "unbacked guest-physical address" : "protection violation on guest-physical address";
        return new VmErrorException($"{k} access to {what} 0x{gpa:x} (guest-virtual 0x{va:x}) at RIP 0x{CurrentRip:x}");
    }

    /// <summary>After a slow-path write of <paramref name="n"/> bytes at <paramref name="va"/>: report the trapped page-table writes among its pages, then take any flush they asked of this vCPU.</summary>
    private void FinishPageTableWrites(ulong va, int n)
    {
        int count = _trapCount;
        _trapCount = 0;
        ulong inFirst = Math.Min((ulong)n, 4096 - (va & 0xFFF));
        for (int i = 0; i < count; i++)
        {
            ulong gpa = i == 0 ? _trap0 : _trap1, trapVa = i == 0 ? _trapVa0 : _trapVa1;
            // The bytes of the write that fell into this page: the start of the write, or the part past the page end.
            if ((trapVa & Mem.PageMask) == (va & Mem.PageMask)) _shadow!.PageTableWritten(Link, gpa | (va & 0xFFF), (int)inFirst);
            else if ((ulong)n > inFirst) _shadow!.PageTableWritten(Link, gpa, n - (int)inFirst);
        }
        if (Link.HasRequests) ServiceRequests();
    }
}
