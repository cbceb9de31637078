using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Cpu;

// Slow paths of guest memory access: TLB misses, page-crossing accesses and
// writes to pages that hold decoded code. Runs on the vCPU thread in guest mode.
public sealed unsafe partial class Vcpu
{
    internal const int JumpSize = 1024;
    private static readonly byte* NoCode = (byte*)System.Runtime.InteropServices.NativeMemory.AllocZeroed(8);

    /// <summary>Drops every TLB entry and every cached RIP-to-block association.</summary>
    internal void FlushTlb()
    {
        _s->FlushEpoch++;
        for (int i = 0; i < Mem.TlbSize; i++)
        {
            _s->TlbRead[i].Tag = TlbEntry.Invalid;
            _s->TlbWrite[i].Tag = TlbEntry.Invalid;
            // No frame either: IsQuiescentFor reads the frame of an entry whatever its tag.
            _s->TlbRead[i].Gpa = TlbEntry.Invalid;
            _s->TlbWrite[i].Gpa = TlbEntry.Invalid;
            _s->TlbWrite[i].Code = NoCode;
            _s->TlbRead[i].Code = NoCode;
        }
        for (int i = 0; i < JumpSize; i++) { _s->Jump[i].Tag = TlbEntry.Invalid; _s->Jump[i].Block = null; }
        // After the entries: a filter bit is never seen cleared while its entry is live.
        for (int w = 0; w < FilterWords; w++) Volatile.Write(ref _s->Held[w], 0);
        ClearIndex();
    }

    /// <summary>invlpg: drops the entries of one page (and all cached block lookups, which are cheap to rebuild).</summary>
    internal void FlushPage(ulong va)
    {
        ulong i = (va >> 12) & Mem.TlbMask;
        _s->TlbRead[i].Tag = TlbEntry.Invalid;
        _s->TlbWrite[i].Tag = TlbEntry.Invalid;
        for (int j = 0; j < JumpSize; j++) _s->Jump[j].Tag = TlbEntry.Invalid;
    }

    /// <summary>
    /// Takes pending link requests while in guest mode: drops the posted guest
    /// frame ranges (or everything) and acknowledges, remembers a stop.
    /// <paramref name="atBoundary"/>: between blocks, where no host pointer is held outside the TLB.
    /// </summary>
    internal void ServiceRequests(bool atBoundary = false)
    {
        if (Link.PinnedCpu >= 0) CheckStillPinned();
        int r = Link.TakeRequests();
        if ((r & VcpuLink.FlushRequest) != 0)
        {
            Span<(ulong, ulong)> ranges = stackalloc (ulong, ulong)[VcpuLink.MaxPendingRanges];
            int n = Link.TakeFlushRanges(ranges);
            // The secondary MMU's zaps leave guest-virtual to guest-physical alone: the
            // jump cache (RIP to decoded block) stays; only host pointers go.
            if (n < 0) FlushTlb();
            else FlushRanges(ranges[..n], atBoundary);
            Link.AcknowledgeFlush();
        }
        if ((r & VcpuLink.StopRequest) != 0) _s->ExitReason = ExitReasons.Stop;
        if ((r & VcpuLink.YieldRequest) != 0) Link.YieldCore();
    }

    /// <summary>
    /// After a translation, before its pointer is used: notes the frame held when the
    /// translation succeeded (<paramref name="ok"/>), fences, then takes any request posted
    /// meanwhile. True when it took one: the answer may predate the flush, translate again.
    /// An invalidator posts before it reads the filter, so one side always sees the other
    /// (TlbShootdown.cs).
    /// </summary>
    private bool FlushedSinceTranslate(bool ok, ulong gfn)
    {
        if (ok)
        {
            NoteHeld(gfn);
            // The pointer is used once the requests are read: from here a shootdown must wait
            // (a checked read publishes AccessTranslating again once it is done with it).
            _s->AccessVa = AccessUnknown;
            Interlocked.MemoryBarrier();   // the filter bit and AccessVa before the requests
        }
        if (!Link.HasRequests) return false;
        ServiceRequests();
        return true;
    }

    /// <summary>RIP of the instruction being executed (for faults and error messages).</summary>
    internal ulong CurrentRip => _s->CurOp != null ? _s->BlockVa + _s->CurOp->RipOff : _s->Rip;

    /// <summary>Host page behind a guest-physical page, via the secondary MMU (VM error when unbacked).</summary>
    internal byte* HostPage(ulong gpa, AccessKind kind, ulong va)
    {
        // AccessUnknown is published before the pointer is used (FlushedSinceTranslate), and every
        // caller (TranslateVa) has published AccessUnknown or AccessTranslating before it came here.
        while (true)
        {
            var st = Memory.Translate(Link, new Gpa(gpa), kind, out byte* host);
            if (FlushedSinceTranslate(st == TranslateStatus.Ok, gpa >> 12))
            {
                if (_checkedRead) _s->AccessVa = AccessTranslating;   // the pointer is dropped: a checked read holds nothing again
                continue;
            }
            if (st == TranslateStatus.Ok) return host;
            if (st == TranslateStatus.HostError)
                throw new HostFailureException($"{kind.ToString().ToLowerInvariant()} access to guest-physical address 0x{gpa:x} (guest-virtual 0x{va:x}) at RIP 0x{CurrentRip:x}");
            string what = st switch
            {
                TranslateStatus.Unbacked => "unbacked guest-physical address",
                TranslateStatus.Protection => "protection violation on guest-physical address",
                _ => $"{st} on guest-physical address",
            };
            throw new VmErrorException($"{kind.ToString().ToLowerInvariant()} access to {what} 0x{gpa:x} (guest-virtual 0x{va:x}) at RIP 0x{CurrentRip:x}");
        }
    }

    /// <summary>
    /// Translates <paramref name="va"/> for <paramref name="kind"/> at the current TLB CPL, fills the
    /// matching TLB and returns the host address of the byte.
    /// </summary>
    /// <remarks>
    /// <paramref name="checkedRead"/>: the caller is <see cref="ReadSlow"/>, which loads through
    /// the pointer returned and then checks the filled entry's tag again. Such a translation
    /// publishes <see cref="AccessTranslating"/> wherever it holds no pointer that it would use
    /// before a fence and a look at the requests (<see cref="FlushedSinceTranslate"/>, the fill),
    /// and <see cref="AccessUnknown"/> from each such look until its pointer is used (the guest
    /// walk's table entries); any other translation publishes <see cref="AccessUnknown"/> throughout.
    /// </remarks>
    internal byte* TranslateVa(ulong va, AccessKind kind, out ulong gpa, bool checkedRead = false)
    {
        // The slow path may hold pointers to two pages (TlbShootdown.cs).
        _checkedRead = checkedRead && kind == AccessKind.Read;
        _s->AccessVa = _checkedRead ? AccessTranslating : AccessUnknown;
        if (_shadow is not null && (_s->Cr0 & Cr0Pg) != 0) return TranslateShadow(va, kind, out gpa);
        gpa = (_s->Cr0 & Cr0Pg) != 0 ? Walk(va, kind) : va;
        while (true)
        {
            byte* page = HostPage(gpa & Mem.PageMask, kind, va);
            if (kind == AccessKind.Fetch) return page + (va & 0xFFF);
            // A checked read uses the pointer only after the fill's look at the requests and
            // checks the entry after its load: it holds nothing a shootdown must wait for.
            if (_checkedRead) _s->AccessVa = AccessTranslating;
            int slot = (kind == AccessKind.Write ? Mem.TlbSize : 0) + (int)((va >> 12) & Mem.TlbMask);
            TlbEntry* e = EntryOf(slot);
            // The tag last: an invalidator scanning from outside never pairs it with another page's fields.
            e->Addend = (long)page - (long)(va & Mem.PageMask);
            e->Gpa = gpa & Mem.PageMask;
            NoteSlotGfn(slot, e->Gpa >> 12);   // before the tag: ShootDown finds the slot by it
            e->Code = kind == AccessKind.Write ? _code.CodeFlag(gpa >> 12) : NoCode;
            Volatile.Write(ref e->Tag, (va & Mem.PageMask) | _s->TlbCplBit);
            IndexFill(slot, e->Gpa >> 12);
            Interlocked.MemoryBarrier();       // the entry before the requests (TlbShootdown.cs)
            if (!Link.HasRequests) return page + (va & 0xFFF);
            ServiceRequests();                 // a shootdown raced with the fill: drop it and translate again
        }
    }

    /// <summary>vCPU thread: the translation in progress is a checked read's (<see cref="TranslateVa"/>).</summary>
    private bool _checkedRead;

    /// <summary>
    /// A load that missed the TLB or crosses a page. As the fast path (<see cref="Mem.LoadChecked"/>),
    /// each load is followed by a second look at the tag of the entry the translation filled, and
    /// a value read through an entry shot down meanwhile is discarded and read again: so a vCPU in
    /// here holds no pointer a shootdown must wait for, except while it publishes
    /// <see cref="AccessUnknown"/> (TlbShootdown.cs, mmu/LOCKING.md "TLB shootdown").
    /// </summary>
    internal ulong ReadSlow(ulong va, int n)
    {
        ulong cpl = _s->TlbCplBit;
        if ((va & 0xFFF) + (ulong)n <= 4096)
        {
            TlbEntry* e = Mem.Entry(_s->TlbRead, va);
            while (true)
            {
                byte* p = TranslateVa(va, AccessKind.Read, out _, checkedRead: true);
                ulong v = n switch
                {
                    1 => Volatile.Read(ref *p), 2 => Volatile.Read(ref *(ushort*)p),
                    4 => Volatile.Read(ref *(uint*)p), _ => Volatile.Read(ref *(ulong*)p),
                };
                if (Volatile.Read(ref e->Tag) == ((va & Mem.PageMask) | cpl)) return v;
            }
        }
        ulong split = 4096 - (va & 0xFFF);
        TlbEntry* ea = Mem.Entry(_s->TlbRead, va), eb = Mem.Entry(_s->TlbRead, va + split);
        while (true)
        {
            // Translating the second page may take a flush request: then the first pointer is stale.
            ulong epoch = _s->FlushEpoch;
            byte* a = TranslateVa(va, AccessKind.Read, out _, checkedRead: true);
            byte* b = TranslateVa(va + split, AccessKind.Read, out _, checkedRead: true);
            if (_s->FlushEpoch != epoch) continue;
            ulong v = 0;
            for (int i = 0; i < n; i++)
                v |= (ulong)((ulong)i < split ? a[i] : b[(ulong)i - split]) << (8 * i);
            Interlocked.MemoryBarrier();   // the loads before the second look at the entries
            if (Volatile.Read(ref ea->Tag) == ((va & Mem.PageMask) | cpl) && Volatile.Read(ref eb->Tag) == (((va + split) & Mem.PageMask) | cpl))
                return v;
        }
    }

    /// <summary>Test hook: runs on the vCPU thread between a slow-path write's translation and its store (the pointer is live).</summary>
    internal Action<ulong>? BeforeSlowWriteHook;

    internal void WriteSlow(ulong va, ulong v, int n)
    {
        _trapCount = 0;   // a trap left by an access that faulted wrote nothing
        if ((va & 0xFFF) + (ulong)n <= 4096)
        {
            byte* p = TranslateVa(va, AccessKind.Write, out ulong gpa);
            BeforeSlowWriteHook?.Invoke(gpa);
            switch (n)
            {
                case 1: *p = (byte)v; break;
                case 2: *(ushort*)p = (ushort)v; break;
                case 4: *(uint*)p = (uint)v; break;
                default: *(ulong*)p = v; break;
            }
            _code.NoteWrite(gpa >> 12);
            if (_trapCount != 0) FinishPageTableWrites(va, n);
            return;
        }
        ulong split = 4096 - (va & 0xFFF);
        byte* a, b;
        ulong g1, g2;
        do
        {
            _trapCount = 0;
            ulong epoch = _s->FlushEpoch;
            a = TranslateVa(va, AccessKind.Write, out g1);
            b = TranslateVa(va + split, AccessKind.Write, out g2);
            if (_s->FlushEpoch == epoch) break;
        }
        while (true);
        for (int i = 0; i < n; i++)
        {
            byte x = (byte)(v >> (8 * i));
            if ((ulong)i < split) a[i] = x; else b[(ulong)i - split] = x;
        }
        _code.NoteWrite(g1 >> 12);
        _code.NoteWrite(g2 >> 12);
        if (_trapCount != 0) FinishPageTableWrites(va, n);
    }

    /// <summary>Checks (and sets dirty bits for) a write of <paramref name="n"/> bytes without writing.</summary>
    internal void ProbeWrite(ulong va, int n)
    {
        TranslateVa(va, AccessKind.Write, out _);
        TranslateVa(va + (ulong)n - 1, AccessKind.Write, out _);
        _trapCount = 0;   // nothing was written: nothing to zap
    }

    internal byte* RmwPtrSlow(ulong va, int n)
    {
        if ((va & 0xFFF) + (ulong)n > 4096)
        {
            ProbeWrite(va, n);
            return null;
        }
        _trapCount = 0;
        byte* p = TranslateVa(va, AccessKind.Write, out ulong gpa);
        if (_trapCount != 0)
        {
            // A write-protected guest page table: the split-lock path writes through
            // WriteSlow, which zaps after the write.
            _trapCount = 0;
            return null;
        }
        _code.NoteWrite(gpa >> 12);
        return p;
    }

    /// <summary>
    /// <see cref="RmwPtrSlow"/> for a locked op (<see cref="Mem.LockedPtr"/>): a write-protected
    /// guest page table gives its pointer, used once and never cached (as WriteSlow's), with the
    /// trap left pending for <see cref="FinishLockedWrite"/>. The pointer stays valid until this
    /// vCPU next takes a flush request, which it does not before the op is done.
    /// </summary>
    internal byte* LockedPtrSlow(ulong va, int n, out bool trapped)
    {
        trapped = false;
        if ((va & 0xFFF) + (ulong)n > 4096)
        {
            ProbeWrite(va, n);
            return null;
        }
        _trapCount = 0;
        byte* p = TranslateVa(va, AccessKind.Write, out ulong gpa);
        trapped = _trapCount != 0;
        if (trapped) BeforeSlowWriteHook?.Invoke(gpa);
        _code.NoteWrite(gpa >> 12);
        return p;
    }

    /// <summary>After a locked op through a trapped pointer: the MMU zaps what the write changed, then this vCPU takes the flushes it asked.</summary>
    internal void FinishLockedWrite(ulong va, int n, bool wrote)
    {
        if (!wrote) _trapCount = 0;
        else if (_trapCount != 0) FinishPageTableWrites(va, n);
    }

    /// <summary>Runs <paramref name="access"/> as an implicit supervisor access (IDT, GDT, TSS), whatever the CPL.</summary>
    internal T Supervisor<T>(Func<T> access)
    {
        ulong saved = _s->TlbCplBit;
        _s->TlbCplBit = 0;
        try { return access(); }
        finally { _s->TlbCplBit = saved; }
    }
}
