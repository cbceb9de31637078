using System.Runtime.CompilerServices;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Cpu;

// The vCPU's side of a TLB shootdown (VcpuLink, VcpuShootdown.FlushLocked).
//
// Every host pointer the vCPU takes from the secondary MMU sets the page's bit
// in a filter of guest frames (HostPage); a TLB fill then fences and re-reads
// the link's requests (TranslateVa). An invalidator posts its flush (a full
// fence) before it reads the filter or the entries, so one side always sees the
// other: the invalidator sees the bit (and the entry), or the vCPU sees the
// request and flushes before it uses the pointer.
//
//   invalidator                          vCPU (TranslateVa)
//   zap the secondary entry              Translate (sets A/D and holder bits)
//   post the flush (interlocked)         set the filter bit; fill the TLB entry
//   MayHold? ShootDown entries           full fence
//   membarrier; IsQuiescent?             read requests: flush and retry if any
//
// Exec.Next stores CurOp before each op runs, and ops that touch no guest memory
// are marked in their block (Block.Quiet0/1). After the invalidator has cleared
// the entries and run a process-wide barrier, a vCPU seen at a quiet op either
// was there at the barrier (holding no pointer) or got there later, after every
// access it made before had completed: its next access reads the cleared TLB.
//
// A narrower answer (IsQuiescentFor): every access through Mem stores its address
// in AccessVa before it probes the TLB, slow paths store AccessUnknown before they
// take a pointer. A vCPU seen at a plain mov (NarrowHandlers) whose published
// address has neither TLB slot naming a frame of the range holds no pointer into
// it (mmu/LOCKING.md "TLB shootdown" gives the argument). A remote ShootDown clears
// the tag only, so a slot keeps naming the frame it mapped.
public sealed unsafe partial class Vcpu : IVcpuTlb
{
    internal const int FilterWords = 128;                 // 8192 bits, indexed by gfn mod 8192
    private const int FilterRangeLimit = 64;              // wider ranges are assumed held

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void NoteHeld(ulong gfn)
    {
        _s->Held[(gfn >> 6) & (FilterWords - 1)] |= 1UL << (int)(gfn & 63);
        _heldSinceRebuild++;
    }

    public bool MayHold(ulong firstGfn, ulong lastGfn)
    {
        CpuState* s = _s;
        if (s == null) return false;
        if (lastGfn - firstGfn >= FilterRangeLimit) return true;
        for (ulong g = firstGfn; ; g++)
        {
            if ((Volatile.Read(ref s->Held[(g >> 6) & (FilterWords - 1)]) & (1UL << (int)(g & 63))) != 0) return true;
            if (g == lastGfn) return false;
        }
    }

    public void ShootDown(ulong firstGfn, ulong lastGfn)
    {
        CpuState* s = _s;
        if (s == null) return;
        DropEntries(s->TlbRead, firstGfn, lastGfn);
        DropEntries(s->TlbWrite, firstGfn, lastGfn);
    }

    private static void DropEntries(TlbEntry* tlb, ulong firstGfn, ulong lastGfn)
    {
        ulong span = lastGfn - firstGfn;
        for (int i = 0; i < Mem.TlbSize; i++)
        {
            TlbEntry* e = tlb + i;
            if ((Volatile.Read(ref e->Gpa) >> 12) - firstGfn <= span && Volatile.Read(ref e->Tag) != TlbEntry.Invalid)
                Volatile.Write(ref e->Tag, TlbEntry.Invalid);
        }
    }

    public bool IsQuiescent
    {
        get
        {
            CpuState* s = _s;
            if (s == null) return true;
            // CurOp first: CurBlock is stored before the block's first op, so it is at least as new.
            Op* op = (Op*)Volatile.Read(ref *(nint*)&s->CurOp);
            if (op == null) return false;   // between blocks: decoding, delivering, servicing
            Block* b = (Block*)Volatile.Read(ref *(nint*)&s->CurBlock);
            if (b == null) return false;
            // The slot may be reused once the vCPU has left it (CodeCache.Reclaim.cs): read its
            // Seq, then the bits, then check that the vCPU is still there and the slot unchanged.
            int seq = Volatile.Read(ref b->Seq);
            long i = op - Block.OpsOf(b);
            if ((ulong)i >= (ulong)Volatile.Read(ref b->NumOps)) return false;   // read across a block change
            bool quiet = i < 64 ? (Volatile.Read(ref b->Quiet0) >> (int)i & 1) != 0
                : i < 128 && (Volatile.Read(ref b->Quiet1) >> (int)(i - 64) & 1) != 0;
            if (Volatile.Read(ref *(nint*)&s->CurOp) != (nint)op || Volatile.Read(ref *(nint*)&s->CurBlock) != (nint)b) return false;
            return quiet && Volatile.Read(ref b->Seq) == seq;
        }
    }

    /// <summary><c>AccessVa</c> of a slow path, which may hold pointers to two pages or none from the TLB.</summary>
    internal const ulong AccessUnknown = ulong.MaxValue;

    /// <summary>
    /// Handlers whose only guest-memory accesses go through <see cref="Mem"/> (each
    /// publishes its address before it probes the TLB) or its slow paths (which
    /// publish <see cref="AccessUnknown"/>), one access, no pointer kept past it:
    /// a vCPU parked in one of them holds at most the pointer of the published page.
    /// A handler rebound by a peephole (fusion, dead flags) is not in the list.
    /// </summary>
    private static readonly nint[] NarrowHandlers =
    [
        (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.RM<S8>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.RM<S16>,
        (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.RM<S32>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.RM<S64>,
        (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.MR<S8>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.MR<S16>,
        (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.MR<S32>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.MR<S64>,
        (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.MI<S8>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.MI<S16>,
        (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.MI<S32>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.MI<S64>,
    ];

    internal static bool IsNarrowHandler(nint handler) => Array.IndexOf(NarrowHandlers, handler) >= 0;

    /// <inheritdoc/>
    /// <remarks>
    /// Besides a quiet op: a vCPU at a plain mov (<see cref="NarrowHandlers"/>) is done
    /// when neither TLB slot of its published address names a frame of the range.
    /// Read after the barrier, <c>AccessVa</c> is either the address of an access that
    /// published before the barrier (its pointer, if still live, came from one of those
    /// two slots, whose frame only this vCPU's own fills change, and a fill publishes
    /// <see cref="AccessUnknown"/> first), or older than an access that published after
    /// it, which then probes the TLB after the barrier and finds the range cleared.
    /// </remarks>
    public bool IsQuiescentFor(ulong firstGfn, ulong lastGfn)
    {
        CpuState* s = _s;
        if (s == null) return true;
        Op* op = (Op*)Volatile.Read(ref *(nint*)&s->CurOp);
        if (op == null) return false;
        Block* b = (Block*)Volatile.Read(ref *(nint*)&s->CurBlock);
        if (b == null) return false;
        int seq = Volatile.Read(ref b->Seq);
        long i = op - Block.OpsOf(b);
        if ((ulong)i >= (ulong)Volatile.Read(ref b->NumOps)) return false;
        bool quiet = i < 64 ? (Volatile.Read(ref b->Quiet0) >> (int)i & 1) != 0
            : i < 128 && (Volatile.Read(ref b->Quiet1) >> (int)(i - 64) & 1) != 0;
        if (!quiet)
        {
            if (!IsNarrowHandler(Volatile.Read(ref *(nint*)&op->H))) return false;
            ulong va = Volatile.Read(ref s->AccessVa);
            if (va == AccessUnknown) return false;
            ulong slot = (va >> 12) & Mem.TlbMask, span = lastGfn - firstGfn;
            if ((Volatile.Read(ref s->TlbRead[slot].Gpa) >> 12) - firstGfn <= span) return false;
            if ((Volatile.Read(ref s->TlbWrite[slot].Gpa) >> 12) - firstGfn <= span) return false;
        }
        if (Volatile.Read(ref *(nint*)&s->CurOp) != (nint)op || Volatile.Read(ref *(nint*)&s->CurBlock) != (nint)b) return false;
        return Volatile.Read(ref b->Seq) == seq;
    }

    public bool Maps(ulong gfn, nint hostPage) =>
        _s != null && (MapsIn(_s->TlbRead, gfn, hostPage) || MapsIn(_s->TlbWrite, gfn, hostPage));

    private static bool MapsIn(TlbEntry* tlb, ulong gfn, nint hostPage)
    {
        for (int i = 0; i < Mem.TlbSize; i++)
        {
            TlbEntry* e = tlb + i;
            ulong tag = Volatile.Read(ref e->Tag);
            if (tag == TlbEntry.Invalid || Volatile.Read(ref e->Gpa) >> 12 != gfn) continue;
            if ((nint)((long)(tag & Mem.PageMask) + e->Addend) == hostPage) return true;
        }
        return false;
    }

    /// <inheritdoc/>
    public long Progress
    {
        get
        {
            CpuState* s = _s;
            return s == null ? -1 : Volatile.Read(ref s->Retired);
        }
    }

    // Which TLB entries map which guest frames (vCPU thread only), so that an
    // acknowledgement drops a page's entries without scanning both 512-entry arrays:
    // a doubly linked list of slots per filter bucket (gfn mod 8192). Slot k < 512 is
    // TlbRead[k], slot 512 + k is TlbWrite[k]; links hold slot + 1 (0 ends a list).
    // An entry stays on its bucket's list when it is invalidated (by anyone) and
    // moves when its slot is filled again.
    private const int Buckets = FilterWords * 64;
    private readonly ushort[] _bucketHead = new ushort[Buckets];
    private readonly ushort[] _slotNext = new ushort[2 * Mem.TlbSize];
    private readonly ushort[] _slotPrev = new ushort[2 * Mem.TlbSize];
    private readonly ushort[] _slotBucket = new ushort[2 * Mem.TlbSize];   // bucket + 1, 0 when on no list
    /// <summary>Filter bits set since the filter was last rebuilt from the TLB (evicted entries and fetch pointers leave theirs behind).</summary>
    private int _heldSinceRebuild;
    /// <summary>Rebuild the whole filter at the next boundary flush once this many bits were set since the last rebuild.</summary>
    private const int RebuildAfter = 256;

    /// <summary>vCPU thread: the entry in <paramref name="slot"/> now maps <paramref name="gfn"/>.</summary>
    private void IndexFill(int slot, ulong gfn)
    {
        Unindex(slot);
        int b = (int)(gfn & (Buckets - 1));
        ushort head = _bucketHead[b];
        _slotNext[slot] = head;
        _slotPrev[slot] = 0;
        if (head != 0) _slotPrev[head - 1] = (ushort)(slot + 1);
        _bucketHead[b] = (ushort)(slot + 1);
        _slotBucket[slot] = (ushort)(b + 1);
    }

    private void Unindex(int slot)
    {
        int b = _slotBucket[slot];
        if (b == 0) return;
        ushort next = _slotNext[slot], prev = _slotPrev[slot];
        if (prev != 0) _slotNext[prev - 1] = next; else _bucketHead[b - 1] = next;
        if (next != 0) _slotPrev[next - 1] = prev;
        _slotBucket[slot] = 0;
    }

    /// <summary>vCPU thread, with the TLB flushed: every list empty, the filter clear.</summary>
    private void ClearIndex()
    {
        Array.Clear(_bucketHead);
        Array.Clear(_slotBucket);
        _heldSinceRebuild = 0;
    }

    private TlbEntry* EntryOf(int slot) => slot < Mem.TlbSize ? _s->TlbRead + slot : _s->TlbWrite + (slot - Mem.TlbSize);

    /// <summary>
    /// vCPU thread: drop the entries of the given guest frame ranges. At a block
    /// boundary (no pointer outside the TLB is live) the filter bits of the dropped
    /// frames are cleared where no other entry of their bucket remains, and now and
    /// then the whole filter is rebuilt from the entries that remain.
    /// </summary>
    private void FlushRanges(ReadOnlySpan<(ulong First, ulong Last)> ranges, bool atBoundary)
    {
        CpuState* s = _s;
        s->FlushEpoch++;
        bool narrow = !atBoundary || _heldSinceRebuild < RebuildAfter;
        foreach (var (first, last) in ranges)
            if (last - first >= FilterRangeLimit) narrow = false;
        if (narrow)
        {
            foreach (var (first, last) in ranges)
                for (ulong g = first; ; g++)
                {
                    DropFrame(g, atBoundary);
                    if (g == last) break;
                }
            return;
        }
        Span<ulong> filter = stackalloc ulong[FilterWords];
        FlushRangesIn(s->TlbRead, ranges, filter);
        FlushRangesIn(s->TlbWrite, ranges, filter);
        if (!atBoundary) return;
        // Whole words: a bit of a page still in the TLB is never seen cleared from outside.
        for (int w = 0; w < FilterWords; w++) Volatile.Write(ref s->Held[w], filter[w]);
        _heldSinceRebuild = 0;
    }

    /// <summary>Drop the entries that map <paramref name="gfn"/>, found through its bucket's list.</summary>
    private void DropFrame(ulong gfn, bool atBoundary)
    {
        int b = (int)(gfn & (Buckets - 1));
        bool othersLive = false;
        for (int slot = _bucketHead[b]; slot != 0; slot = _slotNext[slot - 1])
        {
            TlbEntry* e = EntryOf(slot - 1);
            if (e->Tag == TlbEntry.Invalid) continue;
            if (e->Gpa >> 12 == gfn) Volatile.Write(ref e->Tag, TlbEntry.Invalid);
            else othersLive = true;
        }
        // After the entries, as in FlushTlb; only the vCPU thread writes the filter.
        if (atBoundary && !othersLive)
            Volatile.Write(ref _s->Held[b >> 6], _s->Held[b >> 6] & ~(1UL << (b & 63)));
    }

    private static void FlushRangesIn(TlbEntry* tlb, ReadOnlySpan<(ulong First, ulong Last)> ranges, Span<ulong> filter)
    {
        for (int i = 0; i < Mem.TlbSize; i++)
        {
            TlbEntry* e = tlb + i;
            if (e->Tag == TlbEntry.Invalid) continue;
            ulong gfn = e->Gpa >> 12;
            bool drop = false;
            foreach (var (first, last) in ranges)
                if (gfn - first <= last - first) { drop = true; break; }
            if (drop) Volatile.Write(ref e->Tag, TlbEntry.Invalid);
            else filter[(int)((gfn >> 6) & (FilterWords - 1))] |= 1UL << (int)(gfn & 63);
        }
    }
}
