using Xunit;
using System.Runtime.CompilerServices;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Tests.Secondary;

public class EptTableTests
{
    [Fact]
    public void EptEntry_Size_IsEightBytes() => Assert.Equal(8, Unsafe.SizeOf<EptEntry>());

    [Fact]
    public void Lookup_EmptyTable_NotPresent() => Assert.False(new EptTable().Lookup(12345).IsPresent);

    [Fact]
    public void SetLocked_ThenLookup_ReturnsFrameAndPermissions()
    {
        var t = new EptTable();
        t.SetLocked(0x1_2345, EptEntry.Make(new Hfn(77), writable: false, executable: true));
        var e = t.Lookup(0x1_2345);
        Assert.Equal(new Hfn(77), e.Frame);
        Assert.True(e.Permits(AccessKind.Read));
        Assert.False(e.Permits(AccessKind.Write));
        Assert.True(e.Permits(AccessKind.Fetch));
        Assert.Equal(1, t.PresentCount);
        Assert.False(t.Lookup(0x1_2346).IsPresent);
    }

    [Fact]
    public void ZapLocked_ReturnsDirtyBit_AndClears()
    {
        var t = new EptTable();
        t.SetLocked(5, EptEntry.Make(new Hfn(9), writable: true, executable: false));
        Assert.True(t.TrySetBits(5, t.Lookup(5), EptEntry.Accessed | EptEntry.Dirty));
        var old = t.ZapLocked(5);
        Assert.True(old.IsDirty);
        Assert.True(old.IsAccessed);
        Assert.False(t.Lookup(5).IsPresent);
        Assert.Equal(0, t.PresentCount);
    }

    [Fact]
    public void TrySetBits_OnZappedEntry_FailsAndDoesNotResurrectIt()
    {
        var t = new EptTable();
        t.SetLocked(5, EptEntry.Make(new Hfn(9), writable: true, executable: false));
        var seen = t.Lookup(5);
        t.ZapLocked(5);
        Assert.False(t.TrySetBits(5, seen, EptEntry.Accessed | EptEntry.Dirty));
        Assert.Equal(0UL, t.Lookup(5).Raw);
    }

    [Fact]
    public void TestAndClearAccessed_ReportsOnceThenClears()
    {
        var t = new EptTable();
        t.SetLocked(3, EptEntry.Make(new Hfn(1), true, true));
        Assert.False(t.TestAndClearAccessed(3));
        Assert.True(t.TrySetBits(3, t.Lookup(3), EptEntry.Accessed));
        Assert.True(t.TestAndClearAccessed(3));
        Assert.False(t.TestAndClearAccessed(3));
        Assert.True(t.Lookup(3).IsPresent);
    }

    [Fact]
    public void ForEachPresent_VisitsOnlyMappedEntriesInRange()
    {
        var t = new EptTable();
        ulong[] gfns = [0, 511, 512, 1UL << 18, (1UL << 27) + 7, (1UL << 30) - 1];
        foreach (var g in gfns) t.SetLocked(g, EptEntry.Make(new Hfn((uint)(g & 0xffff)), true, false));
        Assert.Equal(gfns, EptCollector.Gfns(t, 0, ulong.MaxValue >> 1));
        Assert.Equal([511UL, 512UL, 1UL << 18], EptCollector.Gfns(t, 511, 1UL << 18));
    }
}
