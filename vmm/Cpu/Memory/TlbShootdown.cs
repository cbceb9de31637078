using System.Collections.Frozen;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
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
// take a pointer. A vCPU seen at a plain mov store (NarrowStores) whose published
// address has neither TLB slot naming a frame of the range holds no pointer into
// it; one seen at a checked load (CheckedLoads: mov, movzx/movsx, ALU and cmp/test
// forms that only read memory) holds none at all, since a fast-path load checks its
// entry's tag again after the load and retries through the slow path when it was
// cleared (Mem.LoadChecked). mmu/LOCKING.md "TLB shootdown" gives the argument. A
// remote ShootDown clears the tag only, so a slot keeps naming the frame it mapped.
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

    /// <inheritdoc/>
    /// <remarks>
    /// Finds the range's entries through the slots' guest-frame column (<see cref="_slotGfn"/>,
    /// 4 KiB, scanned 8 slots at a time) rather than by reading both 512-entry arrays (32 KiB,
    /// in the other core's cache when the vCPU ran there), then checks each candidate's entry as
    /// before. A fill writes the slot's column value before the entry's tag and before the fence
    /// that precedes its look at the requests, so the invalidator, which posted its flush first,
    /// sees the column value of every fill whose entry it could see (the fill path's argument,
    /// mmu/LOCKING.md "TLB shootdown"); a stale column value only makes a candidate that the
    /// entry's own frame then rules out.
    /// </remarks>
    public void ShootDown(ulong firstGfn, ulong lastGfn)
    {
        CpuState* s = _s;
        if (s == null) return;
        ulong span = lastGfn - firstGfn;
        if (span >= uint.MaxValue)
        {
            DropEntries(s->TlbRead, firstGfn, lastGfn);
            DropEntries(s->TlbWrite, firstGfn, lastGfn);
            return;
        }
        // The column holds frames mod 2^32: a frame of the range always matches (a frame
        // outside it may too, and is ruled out by its entry).
        uint first = (uint)firstGfn, width = (uint)span;
        ref uint column = ref MemoryMarshal.GetArrayDataReference(_slotGfn);
        if (Vector256.IsHardwareAccelerated)
        {
            var vFirst = Vector256.Create(first);
            var vWidth = Vector256.Create(width);
            for (int i = 0; i < 2 * Mem.TlbSize; i += Vector256<uint>.Count)
            {
                var hit = Vector256.LessThanOrEqual(Vector256.LoadUnsafe(ref column, (nuint)i) - vFirst, vWidth);
                if (hit == Vector256<uint>.Zero) continue;
                for (uint m = hit.ExtractMostSignificantBits(); m != 0; m &= m - 1)
                    DropSlot(EntryOf(i + BitOperations.TrailingZeroCount(m)), firstGfn, span);
            }
            return;
        }
        for (int i = 0; i < 2 * Mem.TlbSize; i++)
            if (Volatile.Read(ref Unsafe.Add(ref column, i)) - first <= width) DropSlot(EntryOf(i), firstGfn, span);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DropSlot(TlbEntry* e, ulong firstGfn, ulong span)
    {
        if ((Volatile.Read(ref e->Gpa) >> 12) - firstGfn <= span && Volatile.Read(ref e->Tag) != TlbEntry.Invalid)
            Volatile.Write(ref e->Tag, TlbEntry.Invalid);
    }

    private static void DropEntries(TlbEntry* tlb, ulong firstGfn, ulong lastGfn)
    {
        ulong span = lastGfn - firstGfn;
        for (int i = 0; i < Mem.TlbSize; i++) DropSlot(tlb + i, firstGfn, span);
    }

    /// <summary>vCPU thread: the CPU its thread was found on, off the one it is pinned to (null: never seen off it).</summary>
    public int? MovedOffPinnedCpu { get; private set; }

    /// <summary>
    /// vCPU thread, whenever it services requests (on entering guest mode, and at each flush):
    /// a pinned vCPU found running on another CPU had its affinity changed from outside, which
    /// voids the barrier aimed at its CPU; it unpins itself on its link, so later shootdowns use
    /// the process-wide barrier. A tripwire, not a proof: a move and a shootdown between two
    /// looks go unseen (mmu/LOCKING.md "The barrier aimed at a pinned vCPU's CPU").
    /// </summary>
    private void CheckStillPinned()
    {
        int pinned = Link.PinnedCpu;
        if (pinned < 0) return;
        int now = TargetedBarrier.CurrentCpu();
        if (now < 0 || now == pinned) return;
        Link.SetPinnedCpu(-1);
        MovedOffPinnedCpu = now;
    }

    /// <summary>
    /// Any thread: end the vCPU's chain of blocks at the next block boundary (its chain limit
    /// to 0), where the run loop polls the requests. A racing store of the vCPU's own (the start
    /// of a new chain) may overwrite it; the request is then seen at that chain's end.
    /// Compiled regions need no kick: they poll the requests at every edge themselves.
    /// </summary>
    public void Kick()
    {
        CpuState* s = _s;
        if (s != null) Volatile.Write(ref s->ChainLimit, 0);
    }

    /// <summary>
    /// The guest frame (mod 2^32) each TLB slot was last filled for, slot k &lt; 512 for
    /// TlbRead[k] and 512 + k for TlbWrite[k]; written by the vCPU's fills before the entry's
    /// tag, read by <see cref="ShootDown"/> from other threads. uint.MaxValue: none yet.
    /// </summary>
    private readonly uint[] _slotGfn = NewSlotGfnColumn();

    private static uint[] NewSlotGfnColumn()
    {
        var c = new uint[2 * Mem.TlbSize];
        Array.Fill(c, uint.MaxValue);
        return c;
    }

    /// <summary>vCPU thread, in a fill, before the entry's tag: <paramref name="slot"/> is being filled for <paramref name="gfn"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void NoteSlotGfn(int slot, ulong gfn) => Volatile.Write(ref _slotGfn[slot], (uint)gfn);

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
    /// <c>AccessVa</c> of a checked read's slow path (<see cref="ReadSlow"/>) where it holds no pointer it
    /// would use before a fence and a look at the requests, or before a second look at its entry's tag.
    /// Done for a checked load, not for a store (a real address this high is only ever judged "not done").
    /// </summary>
    internal const ulong AccessTranslating = ulong.MaxValue - 1;

    /// <summary>
    /// <c>AccessVa</c> of the run loop between blocks (<c>CurOp</c> and <c>CurBlock</c> null,
    /// <see cref="MarkBoundary"/>): every access of the last block is over, and the next one
    /// publishes its own address (or AccessUnknown) before it takes a pointer.
    /// </summary>
    internal const ulong AccessBoundary = ulong.MaxValue - 2;

    /// <summary>
    /// Handlers of a plain mov store whose only guest-memory access goes through <see cref="Mem"/>
    /// (which publishes its address before it probes the TLB) or its slow paths (which publish
    /// <see cref="AccessUnknown"/>), one access, no pointer kept past it: a vCPU parked in one
    /// of them holds at most the pointer of the published page.
    /// A handler rebound by a peephole (fusion, dead flags) is not in the list.
    /// </summary>
    private static readonly FrozenSet<nint> NarrowStores = new nint[]
    {
        (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.MR<S8>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.MR<S16>,
        (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.MR<S32>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.MR<S64>,
        (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.MI<S8>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.MI<S16>,
        (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.MI<S32>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.MI<S64>,
    }.ToFrozenSet();

    /// <summary>
    /// Handlers whose only guest-memory access is one load through <see cref="Mem.TryRead"/>
    /// or <see cref="Mem.Read"/> (publishing its address first; the slow path publishes
    /// <see cref="AccessUnknown"/>), whose result reaches registers and flags only: a plain
    /// mov load, movzx/movsx, an ALU op with a memory source (<c>add reg, [mem]</c> and the
    /// rest), <c>cmp</c> and <c>test</c> with a memory operand either way round. A fast-path
    /// load checks its entry's tag after the load (<see cref="Mem.LoadChecked"/>) and discards
    /// a value read through an entry shot down meanwhile, so a vCPU parked in one holds no
    /// pointer an invalidator must wait for.
    /// A handler rebound by a peephole (fusion, dead flags) is not in the list.
    /// </summary>
    private static readonly FrozenSet<nint> CheckedLoads = BuildCheckedLoads();

    private static FrozenSet<nint> BuildCheckedLoads()
    {
        var h = new List<nint>
        {
            (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.RM<S8>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.RM<S16>,
            (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.RM<S32>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.RM<S64>,
            (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.ZxM<S16, S8>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.ZxM<S32, S8>,
            (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.ZxM<S64, S8>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.ZxM<S32, S16>,
            (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.ZxM<S64, S16>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.ZxM<S16, S16>,
            (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.SxM<S16, S8>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.SxM<S32, S8>,
            (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.SxM<S64, S8>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.SxM<S32, S16>,
            (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.SxM<S64, S16>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.SxM<S64, S32>,
            (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.SxM<S32, S32>, (nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Mov.SxM<S16, S16>,
        };
        AddAluSource<Ops.AddOp>(h); AddAluSource<Ops.OrOp>(h); AddAluSource<Ops.AdcOp>(h); AddAluSource<Ops.SbbOp>(h);
        AddAluSource<Ops.AndOp>(h); AddAluSource<Ops.SubOp>(h); AddAluSource<Ops.XorOp>(h); AddAluSource<Ops.CmpOp>(h);
        AddAluSource<Ops.TestOp>(h);
        // cmp [mem], reg / imm and test [mem], reg / imm: the memory operand is only read.
        AddAluReadOnlyDest<Ops.CmpOp>(h);
        AddAluReadOnlyDest<Ops.TestOp>(h);
        return h.ToFrozenSet();
    }

    private static void AddAluSource<O>(List<nint> h) where O : struct, Ops.IAluOp
    {
        h.Add((nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Alu.RM<O, S8>); h.Add((nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Alu.RM<O, S16>);
        h.Add((nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Alu.RM<O, S32>); h.Add((nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Alu.RM<O, S64>);
    }

    /// <summary>The memory-destination forms of an ALU op that never writes its destination (<c>IAluOp.Writes</c> false).</summary>
    private static void AddAluReadOnlyDest<O>(List<nint> h) where O : struct, Ops.IAluOp
    {
        if (O.Writes) throw new InvalidOperationException($"{typeof(O).Name} writes its destination: its memory form is not a load");
        h.Add((nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Alu.MR<O, S8>); h.Add((nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Alu.MR<O, S16>);
        h.Add((nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Alu.MR<O, S32>); h.Add((nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Alu.MR<O, S64>);
        h.Add((nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Alu.MI<O, S8>); h.Add((nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Alu.MI<O, S16>);
        h.Add((nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Alu.MI<O, S32>); h.Add((nint)(delegate*<CpuState*, Op*, Op*>)&Ops.Alu.MI<O, S64>);
    }

    internal static bool IsNarrowHandler(nint handler) => NarrowStores.Contains(handler) || CheckedLoads.Contains(handler);

    /// <summary>A handler whose one access is a load checked after the fact (<see cref="CheckedLoads"/>).</summary>
    internal static bool IsCheckedLoadHandler(nint handler) => CheckedLoads.Contains(handler);

    /// <inheritdoc/>
    /// <remarks>
    /// Besides a quiet op: a vCPU at a checked load (<see cref="CheckedLoads"/>) that has not
    /// published <see cref="AccessUnknown"/> is done whatever page it reads: its fast path
    /// discards a value read through an entry cleared meanwhile, and its slow path publishes
    /// <see cref="AccessUnknown"/> before it takes a pointer. A vCPU at a plain mov store
    /// (<see cref="NarrowStores"/>) is done when neither TLB slot of its published address
    /// names a frame of the range. Read after the barrier, <c>AccessVa</c> is either the
    /// address of an access that published before the barrier (its pointer, if still live,
    /// came from one of those two slots, whose frame only this vCPU's own fills change, and a
    /// fill publishes <see cref="AccessUnknown"/> first), or older than an access that
    /// published after it, which then probes the TLB after the barrier and finds the range cleared.
    /// </remarks>
    public bool IsQuiescentFor(ulong firstGfn, ulong lastGfn)
    {
        CpuState* s = _s;
        if (s == null) return true;
        Op* op = (Op*)Volatile.Read(ref *(nint*)&s->CurOp);
        if (op == null)
        {
            // Between blocks, or in compiled code (which always has a block): done only at the
            // run loop's boundary, seen there twice over.
            bool boundary = Volatile.Read(ref *(nint*)&s->CurBlock) == 0 && Volatile.Read(ref s->AccessVa) == AccessBoundary
                && Volatile.Read(ref *(nint*)&s->CurOp) == 0 && Volatile.Read(ref *(nint*)&s->CurBlock) == 0;
            return boundary;
        }
        Block* b = (Block*)Volatile.Read(ref *(nint*)&s->CurBlock);
        if (b == null) return false;
        int seq = Volatile.Read(ref b->Seq);
        long i = op - Block.OpsOf(b);
        if ((ulong)i >= (ulong)Volatile.Read(ref b->NumOps)) return false;
        bool quiet = i < 64 ? (Volatile.Read(ref b->Quiet0) >> (int)i & 1) != 0
            : i < 128 && (Volatile.Read(ref b->Quiet1) >> (int)(i - 64) & 1) != 0;
        if (!quiet)
        {
            nint h = Volatile.Read(ref *(nint*)&op->H);
            bool load = CheckedLoads.Contains(h);
            if (!load && !NarrowStores.Contains(h)) return false;
            ulong va = Volatile.Read(ref s->AccessVa);
            if (va == AccessUnknown) return false;
            if (!load && va == AccessTranslating) return false;
            // A store publishes exactly its effective address, which its registers give for as long
            // as it runs: another address was published by an access that is over, and this store's
            // own probe comes after the barrier. Its own address: the slot it took a pointer from.
            if (!load && Mem.Ea(s, op) == va)
            {
                ulong slot = (va >> 12) & Mem.TlbMask, span = lastGfn - firstGfn;
                if ((Volatile.Read(ref s->TlbRead[slot].Gpa) >> 12) - firstGfn <= span) return false;
                if ((Volatile.Read(ref s->TlbWrite[slot].Gpa) >> 12) - firstGfn <= span) return false;
            }
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
