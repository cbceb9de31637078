using Xunit;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Tests.Secondary;

/// <summary>Collects what <see cref="EptTable.ForEachPresent{TVisitor}"/> visits.</summary>
internal struct EptCollector(List<(ulong Gfn, EptEntry Entry)> into) : IEptVisitor
{
    public readonly void Visit(ulong gfn, EptEntry entry) => into.Add((gfn, entry));

    public static List<(ulong Gfn, EptEntry Entry)> Entries(EptTable t, ulong first, ulong last)
    {
        var list = new List<(ulong, EptEntry)>();
        var c = new EptCollector(list);
        t.ForEachPresent(first, last, ref c);
        return list;
    }

    public static List<ulong> Gfns(EptTable t, ulong first, ulong last) => [.. Entries(t, first, last).Select(e => e.Gfn)];
}

/// <summary>Zaps every entry it visits, as the notifier's range zap does.</summary>
internal struct EptZapper(EptTable table) : IEptVisitor
{
    public int Zapped;

    public void Visit(ulong gfn, EptEntry entry)
    {
        if (table.ZapLocked(gfn).IsPresent) Zapped++;
    }
}

/// <summary>Counts visits and sums gfns without allocating.</summary>
internal struct EptCounter : IEptVisitor
{
    public int Count;
    public ulong Sum;

    public void Visit(ulong gfn, EptEntry entry) { Count++; Sum += gfn; }
}

public class EptTableOccupancyTests
{
    private static EptEntry Entry(ulong gfn, bool present = true) =>
        present ? EptEntry.Make(new Hfn((uint)(gfn * 7 + 1)), writable: (gfn & 1) == 0, executable: false) : EptEntry.Empty;

    /// <summary>A gfn near a table boundary of some level, or anywhere, so that sets and zaps cross leaves and subtrees.</summary>
    private static ulong RandomGfn(Random rng)
    {
        int shift = rng.Next(4) * 9;                      // 0, 9, 18 or 27: a boundary of that level
        ulong boundary = (ulong)rng.Next(1, 5) << shift;
        return rng.Next(4) switch
        {
            0 => (ulong)rng.NextInt64((long)EptTable.MaxGfn),
            1 => boundary + (ulong)rng.Next(0, 3),
            2 => boundary - Math.Min(boundary, (ulong)rng.Next(1, 4)),
            _ => EptTable.MaxGfn - 1 - (ulong)rng.Next(0, 3),   // the last tables of every level
        };
    }

    private static void AssertMatches(EptTable t, SortedDictionary<ulong, EptEntry> oracle)
    {
        t.CheckOccupancy();
        Assert.Equal(oracle.Count, t.PresentCount);
        Assert.Equal(oracle.Select(kv => (kv.Key, kv.Value)), EptCollector.Entries(t, 0, ulong.MaxValue));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void SetAndZap_RandomSequence_MatchesOracle(int seed)
    {
        var rng = new Random(seed);
        var t = new EptTable();
        var oracle = new SortedDictionary<ulong, EptEntry>();
        for (int step = 0; step < 4000; step++)
        {
            // Zap mostly gfns that are present, so that tables fill and empty again.
            ulong gfn = oracle.Count > 0 && rng.Next(2) == 0 ? oracle.Keys.ElementAt(rng.Next(oracle.Count)) : RandomGfn(rng);
            switch (rng.Next(4))
            {
                case 0 or 1:
                    var e = Entry(gfn + (ulong)step);
                    t.SetLocked(gfn, e);
                    oracle[gfn] = e;
                    break;
                case 2:
                    var old = t.ZapLocked(gfn);
                    Assert.Equal(oracle.Remove(gfn, out var had) ? had : EptEntry.Empty, old);
                    break;
                default:
                    t.SetLocked(gfn, Entry(gfn, present: false));   // installing "not present" is a zap too
                    oracle.Remove(gfn);
                    break;
            }
            if (step % 500 == 0) AssertMatches(t, oracle);
        }
        AssertMatches(t, oracle);
        foreach (var (gfn, e) in oracle) Assert.Equal(e, t.Lookup(gfn));
    }

    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    public void ForEachPresent_RandomRanges_EqualsOracleInOrder(int seed)
    {
        var rng = new Random(seed);
        var t = new EptTable();
        var oracle = new SortedDictionary<ulong, EptEntry>();
        for (int i = 0; i < 3000; i++)
        {
            ulong gfn = RandomGfn(rng);
            t.SetLocked(gfn, Entry(gfn));
            oracle[gfn] = Entry(gfn);
        }
        var keys = oracle.Keys.ToArray();
        for (int i = 0; i < 300; i++)
        {
            // Ranges that start or end on a present gfn, next to one, on a table boundary, or anywhere.
            ulong a = rng.Next(3) switch
            {
                0 => keys[rng.Next(keys.Length)] + (ulong)rng.Next(-1, 2),
                1 => RandomGfn(rng),
                _ => (ulong)rng.NextInt64((long)EptTable.MaxGfn + 10),
            };
            ulong b = rng.Next(2) == 0 ? a + (ulong)rng.Next(0, 2048) : RandomGfn(rng);
            ulong first = Math.Min(a, b), last = Math.Max(a, b);
            var expected = oracle.Where(kv => kv.Key >= first && kv.Key <= last).Select(kv => (kv.Key, kv.Value));
            Assert.Equal(expected, EptCollector.Entries(t, first, last));
        }
    }

    [Fact]
    public void ForEachPresent_VisitorZapsEveryEntry_EmptiesTableAndOccupancy()
    {
        var t = new EptTable();
        var rng = new Random(5);
        var gfns = new HashSet<ulong>();
        for (int i = 0; i < 2000; i++) gfns.Add(RandomGfn(rng));
        foreach (var g in gfns) t.SetLocked(g, Entry(g));
        var zapper = new EptZapper(t);
        t.ForEachPresent(0, EptTable.MaxGfn - 1, ref zapper);
        Assert.Equal(gfns.Count, zapper.Zapped);
        Assert.Equal(0, t.PresentCount);
        t.CheckOccupancy();
        Assert.Empty(EptCollector.Entries(t, 0, ulong.MaxValue));
        foreach (var g in gfns) Assert.False(t.Lookup(g).IsPresent);
    }

    [Fact]
    public void ForEachPresent_ZapHalfTheRange_LeavesTheRestVisited()
    {
        var t = new EptTable();
        for (ulong g = 0; g < 2048; g += 3) t.SetLocked(g, Entry(g));
        var zapper = new EptZapper(t);
        t.ForEachPresent(700, 1500, ref zapper);
        t.CheckOccupancy();
        var left = EptCollector.Gfns(t, 0, ulong.MaxValue);
        Assert.Equal(Enumerable.Range(0, 2048).Select(i => (ulong)i).Where(g => g % 3 == 0 && (g < 700 || g > 1500)), left);
        Assert.Equal(left.Count, t.PresentCount);
    }

    [Fact]
    public void PresentCount_ReplaceAndRezap_CountsEachPageOnce()
    {
        var t = new EptTable();
        t.SetLocked(9, Entry(9));
        t.SetLocked(9, Entry(10));          // replace: still one
        Assert.Equal(1, t.PresentCount);
        Assert.True(t.TrySetBits(9, t.Lookup(9), EptEntry.Accessed | EptEntry.Dirty | EptEntry.VcpuBit(3)));
        Assert.Equal(1, t.PresentCount);    // vCPU bits never change presence
        Assert.True(t.TestAndClearAccessed(9));
        Assert.True(t.ZapLocked(9).IsPresent);
        Assert.False(t.ZapLocked(9).IsPresent);
        Assert.False(t.ZapLocked(1UL << 30).IsPresent);   // no table there
        Assert.Equal(0, t.PresentCount);
        t.CheckOccupancy();
    }

    [Fact]
    public void ForEachPresent_EmptyOrOutOfRange_VisitsNothing()
    {
        var t = new EptTable();
        t.SetLocked(EptTable.MaxGfn - 1, Entry(1));
        t.SetLocked(0, Entry(2));
        Assert.Empty(EptCollector.Gfns(t, 5, 4));                               // first > last
        Assert.Empty(EptCollector.Gfns(t, EptTable.MaxGfn, ulong.MaxValue));    // beyond the table
        Assert.Empty(EptCollector.Gfns(t, 1, EptTable.MaxGfn - 2));
        Assert.Equal([EptTable.MaxGfn - 1], EptCollector.Gfns(t, EptTable.MaxGfn - 1, ulong.MaxValue));
        Assert.Equal([0UL, EptTable.MaxGfn - 1], EptCollector.Gfns(t, 0, ulong.MaxValue));
    }

    [Fact]
    public void SetLocked_BeyondTable_ThrowsClearError()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new EptTable().SetLocked(EptTable.MaxGfn, Entry(1)));
        Assert.Contains("beyond", ex.Message);
    }

    [Fact]
    public void ForEachPresent_StructVisitor_AllocatesNothing()
    {
        var t = new EptTable();
        for (ulong g = 0; g < 64; g++) t.SetLocked(g << 15, Entry(g));   // 64 pages spread over 1 GiB of gfns
        var counter = new EptCounter();
        t.ForEachPresent(0, (1UL << 21) - 1, ref counter);                // warm up (JIT)
        counter = new EptCounter();
        long before = GC.GetAllocatedBytesForCurrentThread();
        t.ForEachPresent(0, (1UL << 21) - 1, ref counter);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(64, counter.Count);
        Assert.Equal(Enumerable.Range(0, 64).Aggregate(0UL, (s, g) => s + ((ulong)g << 15)), counter.Sum);
        Assert.Equal(0, allocated);
    }
}
