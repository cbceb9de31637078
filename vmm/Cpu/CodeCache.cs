using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Cpu;

/// <summary>
/// Decoded blocks shared by every vCPU of a VM, keyed by (guest-physical, guest-virtual)
/// start, so a block decoded under one mapping is never reused under another.
/// </summary>
/// <remarks>
/// Lock order: <c>_lock</c> only (never held while calling out).
/// <c>_lock</c> guards <c>_blocks</c>, <c>_byPage</c>, <c>_pageGen</c>, the arena, the free
/// lists, the retired lists and the vCPU list (CodeCache.Reclaim.cs).
/// <para>
/// Invalidation (self- and cross-modifying code): a byte per guest-physical page says
/// "decoded code lives here". The write fast path (Mem.Write) reads that byte through the
/// write-TLB entry and goes slow when it is set; the slow path writes, then calls
/// <see cref="NoteWrite"/>, which invalidates every block of the page: the block leaves the
/// hash table and each of its ops gets the bail-out handler, so a vCPU still executing it
/// (this one or another) leaves it at its next op and re-decodes. A per-page generation,
/// read before decoding and checked on insert, discards a block whose page changed while it
/// was being decoded.
/// </para>
/// <para>
/// Memory is bounded: an invalidated block is <i>retired</i>, and its slot is reused once
/// every vCPU has passed a block boundary since (a grace period, CodeCache.Reclaim.cs);
/// when the arena would grow past <see cref="CapBytes"/> every block is retired (a flush).
/// </para>
/// </remarks>
internal sealed unsafe partial class CodeCache
{
    private static readonly ConditionalWeakTable<IGuestMemory, CodeCache> PerVm = new();

    public static CodeCache For(IGuestMemory memory) => PerVm.GetValue(memory, m => new CodeCache(m));

    /// <summary>
    /// Contents of guest memory changed behind the vCPUs' back (the management side's
    /// ContentsReplaced, e.g. DISCARD): blocks decoded from those bytes are stale.
    /// </summary>
    public static void ContentsReplaced(IGuestMemory memory, Gpa start, ulong bytes)
    {
        if (PerVm.TryGetValue(memory, out var cache)) cache.OnContentsReplaced(start, bytes);
    }

    private readonly object _lock = new();
    private readonly Dictionary<(ulong Gpa, ulong Va), nint> _blocks = new();   // guarded by _lock
    private readonly Dictionary<ulong, List<nint>> _byPage = new();             // guarded by _lock
    private readonly int[] _pageGen;                                            // guarded by _lock
    private readonly byte* _codeBits;                                           // set under _lock, read racily
    private readonly ulong _pages;

    private CodeCache(IGuestMemory memory)
    {
        _pages = (memory.RamBytes >> Page.Shift) + 1;
        _codeBits = (byte*)NativeMemory.AllocZeroed((nuint)_pages);
        _pageGen = new int[_pages];
        _epochCell = (long*)NativeMemory.AllocZeroed(sizeof(long));
    }

    ~CodeCache()
    {
        // Only when the VM's memory and every vCPU are gone: nothing can point into the arena.
        foreach (nint chunk in _chunks) NativeMemory.AlignedFree((void*)chunk);
        NativeMemory.Free(_codeBits);
        NativeMemory.Free(_epochCell);
    }

    /// <summary>Blocks decoded since the VM started (for reports and tests).</summary>
    public long BlocksDecoded;
    /// <summary>Blocks invalidated by writes, replaced contents or a flush.</summary>
    public long BlocksInvalidated;

    /// <summary>Pointer to the "has code" byte of a guest-physical page (stable for the cache's life).</summary>
    public byte* CodeFlag(ulong gfn) => _codeBits + (gfn < _pages ? gfn : _pages - 1);

    /// <summary>Called after a slow-path write to <paramref name="gfn"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void NoteWrite(ulong gfn)
    {
        if (gfn < _pages && Volatile.Read(ref _codeBits[gfn]) != 0) InvalidatePage(gfn);
    }

    /// <summary>
    /// The live block decoded at (<paramref name="gpa"/>, <paramref name="va"/>), or null.
    /// The caller may run it until its next block boundary (the grace period keeps the slot).
    /// </summary>
    public Block* Lookup(ulong gpa, ulong va)
    {
        lock (_lock)
            return _blocks.TryGetValue((gpa, va), out nint b) ? (Block*)b : null;
    }

    /// <summary>Marks <paramref name="gfn"/> as holding code and returns its generation (call before reading its bytes).</summary>
    public int BeginDecode(ulong gfn)
    {
        if (gfn >= _pages) return 0;
        lock (_lock)
        {
            Volatile.Write(ref _codeBits[gfn], 1);
            return _pageGen[gfn];
        }
    }

    /// <summary>
    /// Copies a decoded block into the arena and publishes it, unless a page it came from
    /// changed since <see cref="BeginDecode"/> (then returns null: decode again).
    /// <paramref name="decoder"/> is the decoding vCPU's state: it is between blocks, so the
    /// allocation may end a grace period on its behalf (CodeCache.Reclaim.cs).
    /// </summary>
    public Block* Publish(CpuState* decoder, ulong va, ulong gpa, ulong gpa2, int gen1, int gen2, ReadOnlySpan<Op> ops, ulong quiet0, ulong quiet1)
    {
        lock (_lock)
        {
            ulong g1 = gpa >> Page.Shift, g2 = gpa2 >> Page.Shift;
            if (g1 < _pages && _pageGen[g1] != gen1) return null;
            if (gpa2 != ulong.MaxValue && g2 < _pages && _pageGen[g2] != gen2) return null;
            if (_blocks.TryGetValue((gpa, va), out nint existing)) return (Block*)existing;
            var b = AllocateLocked(decoder, ops.Length);
            b->Va = va;
            b->Gpa = gpa;
            b->Gpa2 = gpa2;
            b->NumOps = ops.Length;
            b->HashNext = null;
            b->Quiet0 = quiet0;
            b->Quiet1 = quiet1;
            fixed (Op* src = ops)
                Buffer.MemoryCopy(src, Block.OpsOf(b), ops.Length * sizeof(Op), ops.Length * sizeof(Op));
            OnPublishLocked(b);
            b->Valid = 1;
            _blocks[(gpa, va)] = (nint)b;
            AddToPage(g1, b);
            if (gpa2 != ulong.MaxValue) AddToPage(g2, b);
            BlocksDecoded++;
            _liveBlocks++;
            _liveBytes += SlotBytes(b->Class);
            return b;
        }
    }

    private void AddToPage(ulong gfn, Block* b)
    {
        if (!_byPage.TryGetValue(gfn, out var list)) _byPage[gfn] = list = new List<nint>();
        list.Add((nint)b);
    }

    /// <summary>Invalidates every block decoded from guest-physical page <paramref name="gfn"/>.</summary>
    public void InvalidatePage(ulong gfn)
    {
        lock (_lock)
        {
            if (gfn >= _pages) return;
            _pageGen[gfn]++;
            Volatile.Write(ref _codeBits[gfn], 0);
            if (!_byPage.Remove(gfn, out var list)) return;
            foreach (nint p in list)
            {
                var b = (Block*)p;
                if (b->Valid == 0) continue;
                // A block that spans two pages is listed under the other one too: its slot
                // will be reused, so that list must forget it.
                if (b->Gpa2 != ulong.MaxValue)
                {
                    ulong other = (b->Gpa >> Page.Shift) == gfn ? b->Gpa2 >> Page.Shift : b->Gpa >> Page.Shift;
                    if (_byPage.TryGetValue(other, out var otherList))
                    {
                        otherList.Remove(p);
                        if (otherList.Count == 0) _byPage.Remove(other);
                    }
                }
                RetireLocked(b);
            }
        }
    }

    /// <summary>
    /// Takes a live block out of the table and makes every op bail out: a vCPU still inside it
    /// leaves at its next op. The slot is reused after a grace period (CodeCache.Reclaim.cs).
    /// The caller has removed it from <c>_byPage</c>.
    /// </summary>
    private void RetireLocked(Block* b)
    {
        Debug.Assert(Monitor.IsEntered(_lock));
        Volatile.Write(ref b->Valid, 0);
        _blocks.Remove((b->Gpa, b->Va));
        Op* ops = Block.OpsOf(b);
        for (int i = 0; i < b->NumOps; i++) ops[i].H = Ops.Control.BailOutHandler;
        BlocksInvalidated++;
        _liveBlocks--;
        _liveBytes -= SlotBytes(b->Class);
        _retired.Add((nint)b);
        _retiredBytes += SlotBytes(b->Class);
    }

    /// <summary>
    /// Retires every live block (the arena is at its cap). The "has code" bytes and page
    /// generations stay: a decode in flight still publishes a correct block, and a later
    /// write to such a page only takes the slow path once.
    /// </summary>
    private void FlushLocked()
    {
        Debug.Assert(Monitor.IsEntered(_lock));
        var all = new List<nint>(_blocks.Values);
        _byPage.Clear();
        foreach (nint p in all) RetireLocked((Block*)p);
        Flushes++;
    }

    private void OnContentsReplaced(Gpa start, ulong bytes)
    {
        ulong first = start.Value >> Page.Shift;
        ulong last = (start.Value + bytes + Page.OffsetMask) >> Page.Shift;
        for (ulong g = first; g < last && g < _pages; g++)
            if (Volatile.Read(ref _codeBits[g]) != 0) InvalidatePage(g);
    }
}
