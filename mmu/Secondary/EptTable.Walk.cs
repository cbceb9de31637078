using System.Diagnostics;
using System.Numerics;

namespace ToyVmm.Mmu.Secondary;

// Occupancy of the EPT-like table and the range walk built on it. Everything
// here runs under the owner's _mmuLock (see the layout in EptTable.cs).
//
// Why: a range invalidation used to read every entry of every existing leaf in
// the range, so 64 mapped pages spread over 1 GiB cost 64 x 512 reads plus a
// closure (77 us against 9.7 us for the same pages in 2 MiB; now 9.8 us;
// InvalidateRangeSizeBenchmarks in bench/RESULTS.md). With a bitmap per table
// the walk jumps from one set bit to the next: its cost is the present entries
// in the range plus eight bitmap words for each table that holds one of them.
public sealed partial class EptTable
{
    private const int OccupancyWords = Fanout / 64;          // 8 words of bitmap
    private const int LeafBitmap = Fanout;                    // leaf[512..519]
    private const int LeafCount = Fanout + OccupancyWords;    // leaf[520]
    private const int InnerCount = OccupancyWords;            // occupancy[8]

    private static object?[] NewInner()
    {
        var table = new object?[Fanout + 1];
        table[Fanout] = new ulong[OccupancyWords + 1];
        return table;
    }

    private static ulong[] NewLeaf() => new ulong[Fanout + OccupancyWords + 1];

    private static ulong[] Occupancy(object?[] inner) => (ulong[])inner[Fanout]!;

    /// <summary>
    /// Visit, in ascending order, every present entry with gfn in [first, last].
    /// Cost: the present entries in the range plus a few bitmap words per table
    /// that holds one; empty tables and absent subtrees cost nothing, so a 1 GiB
    /// range costs what its mapped pages cost. Allocates nothing. The caller
    /// holds the MMU lock (occupancy is only consistent under it); the visitor
    /// may zap the entry it is given.
    /// </summary>
    public void ForEachPresent<TVisitor>(ulong first, ulong last, ref TVisitor visitor)
        where TVisitor : struct, IEptVisitor
    {
        if (first > last || first >= MaxGfn) return;
        last = Math.Min(last, MaxGfn - 1);
        // Each table below is entered only if it overlaps [first, last], so the
        // range clips its index span at most at the two ends.
        var occ4 = Occupancy(_root);
        int hi4 = (int)(last >> 27);
        for (int i4 = NextSet(occ4, 0, (int)(first >> 27), hi4); i4 >= 0; i4 = NextSet(occ4, 0, i4 + 1, hi4))
        {
            var l3 = (object?[])_root[i4]!;
            var occ3 = Occupancy(l3);
            ulong base4 = (ulong)i4 << 27;
            int hi3 = SpanEnd(last, base4 + (1UL << 27) - 1, 18);
            for (int i3 = NextSet(occ3, 0, SpanStart(first, base4, 18), hi3); i3 >= 0; i3 = NextSet(occ3, 0, i3 + 1, hi3))
            {
                var l2 = (object?[])l3[i3]!;
                var occ2 = Occupancy(l2);
                ulong base3 = base4 | ((ulong)i3 << 18);
                int hi2 = SpanEnd(last, base3 + (1UL << 18) - 1, 9);
                for (int i2 = NextSet(occ2, 0, SpanStart(first, base3, 9), hi2); i2 >= 0; i2 = NextSet(occ2, 0, i2 + 1, hi2))
                {
                    var leaf = (ulong[])l2[i2]!;
                    ulong base2 = base3 | ((ulong)i2 << 9);
                    int hi1 = SpanEnd(last, base2 + IndexMask, 0);
                    for (int i1 = NextSet(leaf, LeafBitmap, SpanStart(first, base2, 0), hi1); i1 >= 0; i1 = NextSet(leaf, LeafBitmap, i1 + 1, hi1))
                    {
                        ulong raw = Volatile.Read(ref leaf[i1]);
                        if ((raw & EptEntry.Read) != 0) visitor.Visit(base2 | (uint)i1, new EptEntry(raw));
                    }
                }
            }
        }
    }

    /// <summary>First index of a table starting at <paramref name="tableFirst"/> that [first, ...] reaches.</summary>
    private static int SpanStart(ulong first, ulong tableFirst, int shift) =>
        first > tableFirst ? (int)((first >> shift) & IndexMask) : 0;

    /// <summary>Last index of a table ending at <paramref name="tableLast"/> that [..., last] reaches.</summary>
    private static int SpanEnd(ulong last, ulong tableLast, int shift) =>
        last < tableLast ? (int)((last >> shift) & IndexMask) : Fanout - 1;

    /// <summary>The lowest set bit in [from, hi] of the bitmap at words[offset..offset+8), or -1.</summary>
    private static int NextSet(ulong[] words, int offset, int from, int hi)
    {
        if (from > hi) return -1;
        int w = from >> 6, lastWord = hi >> 6;
        ulong bits = words[offset + w] & (ulong.MaxValue << (from & 63));
        while (bits == 0)
        {
            if (++w > lastWord) return -1;
            bits = words[offset + w];
        }
        int index = (w << 6) + BitOperations.TrailingZeroCount(bits);
        return index <= hi ? index : -1;
    }

    /// <summary>Entry <paramref name="gfn"/> became present: set its bit and, for each table that was empty, the parent's.</summary>
    private void MarkPresentLocked(ulong gfn, object?[] l3, object?[] l2, ulong[] leaf)
    {
        _present++;
        if (!SetBit(leaf, LeafBitmap, LeafCount, (int)(gfn & IndexMask))) return;
        if (!SetBit(Occupancy(l2), 0, InnerCount, (int)((gfn >> 9) & IndexMask))) return;
        if (!SetBit(Occupancy(l3), 0, InnerCount, (int)((gfn >> 18) & IndexMask))) return;
        SetBit(Occupancy(_root), 0, InnerCount, (int)((gfn >> 27) & IndexMask));
    }

    /// <summary>Entry <paramref name="gfn"/> stopped being present: clear its bit and, for each table now empty, the parent's.</summary>
    private void MarkAbsentLocked(ulong gfn, object?[] l3, object?[] l2, ulong[] leaf)
    {
        _present--;
        if (!ClearBit(leaf, LeafBitmap, LeafCount, (int)(gfn & IndexMask))) return;
        if (!ClearBit(Occupancy(l2), 0, InnerCount, (int)((gfn >> 9) & IndexMask))) return;
        if (!ClearBit(Occupancy(l3), 0, InnerCount, (int)((gfn >> 18) & IndexMask))) return;
        ClearBit(Occupancy(_root), 0, InnerCount, (int)((gfn >> 27) & IndexMask));
    }

    /// <summary>Set bit <paramref name="index"/> (clear before) and count it; true when the table was empty.</summary>
    private static bool SetBit(ulong[] words, int offset, int count, int index)
    {
        Debug.Assert((words[offset + (index >> 6)] & (1UL << (index & 63))) == 0, "a present entry or non-empty child is marked once");
        words[offset + (index >> 6)] |= 1UL << (index & 63);
        return words[count]++ == 0;
    }

    /// <summary>Clear bit <paramref name="index"/> (set before) and uncount it; true when the table is now empty.</summary>
    private static bool ClearBit(ulong[] words, int offset, int count, int index)
    {
        Debug.Assert((words[offset + (index >> 6)] & (1UL << (index & 63))) != 0, "only a marked entry or child is unmarked");
        words[offset + (index >> 6)] &= ~(1UL << (index & 63));
        return --words[count] == 0;
    }

    /// <summary>
    /// Check that occupancy matches the entries: each leaf's bitmap is its present
    /// entries, each inner bitmap its children holding one, each count its bitmap's
    /// population and the total <see cref="PresentCount"/>. Walks the whole table;
    /// for tests. The caller holds the MMU lock or owns the table alone.
    /// </summary>
    internal void CheckOccupancy()
    {
        long total = CheckInner(_root, 3, 0);
        if (total != _present)
            throw new InvalidOperationException($"PresentCount is {_present} but {total} entries are present");
    }

    private static long CheckInner(object?[] table, int level, ulong tableFirst)
    {
        var occ = Occupancy(table);
        int shift = 9 * level;
        long present = 0, children = 0;
        for (int i = 0; i < Fanout; i++)
        {
            ulong first = tableFirst | ((ulong)i << shift);
            long below = table[i] switch
            {
                null => 0,
                object?[] inner when level > 1 => CheckInner(inner, level - 1, first),
                ulong[] leaf when level == 1 => CheckLeaf(leaf, first),
                var other => throw new InvalidOperationException($"table for gfn {first:x} at level {level + 1} holds a {other.GetType().Name}"),
            };
            bool marked = (occ[i >> 6] & (1UL << (i & 63))) != 0;
            if (marked != (below > 0))
                throw new InvalidOperationException($"the child for gfn {first:x} holds {below} present entries but its occupancy bit is {(marked ? "set" : "clear")}");
            present += below;
            if (below > 0) children++;
        }
        if ((long)occ[InnerCount] != children)
            throw new InvalidOperationException($"the table for gfn {tableFirst:x} counts {occ[InnerCount]} non-empty children but has {children}");
        return present;
    }

    private static long CheckLeaf(ulong[] leaf, ulong tableFirst)
    {
        long present = 0;
        for (int i = 0; i < Fanout; i++)
        {
            bool isPresent = (leaf[i] & EptEntry.Read) != 0;
            bool marked = (leaf[LeafBitmap + (i >> 6)] & (1UL << (i & 63))) != 0;
            if (marked != isPresent)
                throw new InvalidOperationException($"entry {tableFirst | (uint)i:x} is {(isPresent ? "present" : "absent")} but its occupancy bit is {(marked ? "set" : "clear")}");
            if (isPresent) present++;
        }
        if ((long)leaf[LeafCount] != present)
            throw new InvalidOperationException($"the leaf for gfn {tableFirst:x} counts {leaf[LeafCount]} present entries but has {present}");
        return present;
    }
}
