using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace ToyVmm.Mmu.Secondary.Shadow;

// Locking: every member runs under the owning ShadowMmu's _mmuLock (it is the
// MMU's reverse map); nothing here is read lock-free.

/// <summary>
/// The shadow MMU's reverse map in one word per guest frame (KVM's <c>rmap_head</c>):
/// the word names the frame's single shadow leaf entry (its shadow page's id and the
/// entry's index) and whether its direct-role entry is present; a frame mapped by more
/// than one leaf (a page mapped at two guest-virtual addresses, or under two roles)
/// keeps the others in a spill list. The words live in chunks of 512 (one per 512
/// guest frames, made when the first frame in it is mapped, dropped with its last),
/// so a densely mapped guest pays 8 bytes a frame (bench/RESULTS.md, the EPT-vs-shadow table).
/// A dropped chunk (all zeros) is kept for the next one made, up to <see cref="MaxSpareChunks"/>:
/// a frame alone in its chunk, zapped and faulted in again, would otherwise cost a 4 KiB
/// allocation on every fault.
/// </summary>
internal sealed class ShadowRmap
{
    private const int ChunkShift = 9, ChunkWords = 1 << ChunkShift;
    private const ulong DirectBit = 1, SpillBit = 2;
    private const int RefShift = 2;

    private sealed class Chunk
    {
        public readonly ulong[] Words = new ulong[ChunkWords];
        public int Live;
    }

    /// <summary>Dropped chunks kept for reuse (64 KiB at most).</summary>
    private const int MaxSpareChunks = 16;

    private readonly Dictionary<ulong, Chunk> _chunks = new();
    private readonly Stack<Chunk> _spare = new();
    private readonly Dictionary<ulong, List<long>> _spill = new();   // gfn -> its leaves beyond the one in its word
    private readonly List<ShadowPage?> _pages = [null];              // id -> leaf shadow page (id 0: none)
    private readonly Stack<int> _freeIds = new();

    /// <summary>Guest frames with at least one entry.</summary>
    public int Count { get; private set; }

    /// <summary>Leaf entries in the map (every shadow page's, not the direct role's).</summary>
    public long Leaves { get; private set; }

    /// <summary>Give a new level-1 shadow page the id its leaves are named by.</summary>
    public void Register(ShadowPage page)
    {
        int id = _freeIds.Count != 0 ? _freeIds.Pop() : _pages.Count;
        if (id == _pages.Count) _pages.Add(page); else _pages[id] = page;
        page.Id = id;
    }

    /// <summary>A zapped level-1 shadow page (its leaves already out of the map) gives its id back.</summary>
    public void Unregister(ShadowPage page)
    {
        if (page.Id == 0) return;
        _pages[page.Id] = null;
        _freeIds.Push(page.Id);
        page.Id = 0;
    }

    private static long RefOf(ShadowPage page, int index) => ((long)page.Id << ChunkShift) | (long)index;

    private (ShadowPage Page, int Index) Resolve(long leaf) => (_pages[(int)(leaf >> ChunkShift)]!, (int)(leaf & (ChunkWords - 1)));

    private ref ulong Word(ulong gfn, bool create)
    {
        if (!_chunks.TryGetValue(gfn >> ChunkShift, out var chunk))
        {
            if (!create) return ref Unsafe.NullRef<ulong>();
            _chunks[gfn >> ChunkShift] = chunk = _spare.Count != 0 ? _spare.Pop() : new Chunk();
        }
        return ref chunk.Words[(int)(gfn & (ChunkWords - 1))];
    }

    /// <summary>Set or clear a word; keeps the frame and chunk counts.</summary>
    private void Store(ulong gfn, ref ulong word, ulong value)
    {
        if (word == 0 && value != 0) { Count++; _chunks[gfn >> ChunkShift].Live++; }
        else if (word != 0 && value == 0)
        {
            Count--;
            var chunk = _chunks[gfn >> ChunkShift];
            word = 0;
            if (--chunk.Live == 0)
            {
                _chunks.Remove(gfn >> ChunkShift);
                // Every word is zero again (Live counts the others): ready for reuse as it is.
                Debug.Assert(Array.TrueForAll(chunk.Words, w => w == 0), "a dropped chunk holds no entry");
                if (_spare.Count < MaxSpareChunks) _spare.Push(chunk);
            }
            return;
        }
        word = value;
    }

    /// <summary>The entries of <paramref name="gfn"/>; false when it has none.</summary>
    public bool TryGet(ulong gfn, out Head head)
    {
        ref ulong word = ref Word(gfn, create: false);
        if (Unsafe.IsNullRef(ref word) || word == 0) { head = default; return false; }
        head = new Head(this, word, (word & SpillBit) != 0 ? _spill[gfn] : null);
        return true;
    }

    public void AddDirect(ulong gfn)
    {
        ref ulong word = ref Word(gfn, create: true);
        Store(gfn, ref word, word | DirectBit);
    }

    public void RemoveDirect(ulong gfn)
    {
        ref ulong word = ref Word(gfn, create: false);
        if (Unsafe.IsNullRef(ref word)) return;
        Store(gfn, ref word, word & ~DirectBit);
    }

    public void AddLeaf(ulong gfn, ShadowPage page, int index)
    {
        ref ulong word = ref Word(gfn, create: true);
        long leaf = RefOf(page, index);
        Leaves++;
        if (word >> RefShift == 0) { Store(gfn, ref word, word | ((ulong)(leaf + 1) << RefShift)); return; }
        if (!_spill.TryGetValue(gfn, out var list)) _spill[gfn] = list = [];
        list.Add(leaf);
        word |= SpillBit;
    }

    public void RemoveLeaf(ulong gfn, ShadowPage page, int index)
    {
        ref ulong word = ref Word(gfn, create: false);
        if (Unsafe.IsNullRef(ref word) || word == 0) return;
        long leaf = RefOf(page, index);
        if ((long)(word >> RefShift) - 1 == leaf)
        {
            Leaves--;
            ulong rest = word & DirectBit;
            if ((word & SpillBit) != 0)
            {
                // The word takes a leaf from the spill list.
                var list = _spill[gfn];
                long moved = list[^1];
                list.RemoveAt(list.Count - 1);
                rest |= (ulong)(moved + 1) << RefShift;
                if (list.Count == 0) _spill.Remove(gfn); else rest |= SpillBit;
            }
            Store(gfn, ref word, rest);
            return;
        }
        if ((word & SpillBit) == 0 || !_spill.TryGetValue(gfn, out var spill) || !spill.Remove(leaf)) return;
        Leaves--;
        if (spill.Count == 0) { _spill.Remove(gfn); word &= ~SpillBit; }
    }

    /// <summary>Take every entry of <paramref name="gfn"/> out of the map at once; false when it had none.</summary>
    public bool Remove(ulong gfn, out Head head)
    {
        if (!TryGet(gfn, out head)) return false;
        if (head.Spill is not null) _spill.Remove(gfn);
        Leaves -= head.LeafCount;
        ref ulong word = ref Word(gfn, create: false);
        Store(gfn, ref word, 0);
        return true;
    }

    /// <summary>The mapped guest frames in [first, last], cheapest way round (probe each frame of a small range, walk the chunks of a large one).</summary>
    public List<ulong> KeysIn(ulong first, ulong last)
    {
        var keys = new List<ulong>();
        if (Count == 0 || first > last) return keys;
        if (last - first < (ulong)_chunks.Count * ChunkWords)
        {
            for (ulong g = first; ; g++)
            {
                ref ulong word = ref Word(g, create: false);
                if (!Unsafe.IsNullRef(ref word) && word != 0) keys.Add(g);
                if (g == last) break;
            }
            return keys;
        }
        foreach (var (index, chunk) in _chunks)
        {
            ulong baseGfn = index << ChunkShift;
            if (baseGfn + ChunkWords - 1 < first || baseGfn > last) continue;
            for (int i = 0; i < ChunkWords; i++)
            {
                ulong g = baseGfn + (ulong)i;
                if (chunk.Words[i] != 0 && g >= first && g <= last) keys.Add(g);
            }
        }
        return keys;
    }

    /// <summary>One guest frame's entries: whether its direct entry is present, and its leaves.</summary>
    public readonly struct Head
    {
        private readonly ShadowRmap _map;
        private readonly ulong _word;
        internal readonly List<long>? Spill;

        internal Head(ShadowRmap map, ulong word, List<long>? spill) => (_map, _word, Spill) = (map, word, spill);

        public bool Direct => (_word & DirectBit) != 0;
        public int LeafCount => (_word >> RefShift != 0 ? 1 : 0) + (Spill?.Count ?? 0);
        public int Count => LeafCount + (Direct ? 1 : 0);

        /// <summary>The first leaf, if any (the one in the word).</summary>
        public bool TryFirstLeaf(out ShadowPage page, out int index)
        {
            (page, index) = (null!, 0);
            if (_word >> RefShift == 0) return false;
            (page, index) = _map.Resolve((long)(_word >> RefShift) - 1);
            return true;
        }

        public LeafEnumerator GetEnumerator() => new(this);

        internal ShadowRmap Map => _map;
        internal ulong Word => _word;
    }

    /// <summary>The leaves of a <see cref="Head"/>: the word's, then the spill list's (a struct: allocates nothing).</summary>
    public struct LeafEnumerator(Head head)
    {
        private int _i = -1;
        private readonly bool _hasFirst = head.Word >> RefShift != 0;

        public readonly (ShadowPage Page, int Index) Current =>
            _i == 0 && _hasFirst ? head.Map.Resolve((long)(head.Word >> RefShift) - 1) : head.Map.Resolve(head.Spill![_i - (_hasFirst ? 1 : 0)]);

        public bool MoveNext()
        {
            _i++;
            return _i < (_hasFirst ? 1 : 0) + (head.Spill?.Count ?? 0);
        }
    }
}
