using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Notifiers;
using Xunit;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Host;

/// <summary>
/// Cold and hot picks read the host's LRU and the accessed bits aging sees
/// (host PTE, referenced bit, secondary MMUs through TestYoung) and clear none.
/// </summary>
public class PickResidentPagesTests
{
    /// <summary>A secondary MMU whose accessed bits are a set of pages; counts the calls that would clear them.</summary>
    private sealed class YoungPages : IMmuNotifierSubscriber
    {
        public readonly HashSet<ulong> Young = new();
        public int Clears;
        public bool InvalidateRangeStart(in InvalidateRange range) => true;
        public void InvalidateRangeEnd(in InvalidateRange range) { }
        public void InvalidatePage(Hva address) { }
        public bool ClearFlushYoung(Hva start, Hva end) => ClearYoung(start, end);
        public bool ClearYoung(Hva start, Hva end)
        {
            lock (this)
            {
                Clears++;
                bool any = false;
                for (ulong v = start.PageNumber; v < end.PageNumber; v++) any |= Young.Remove(v);
                return any;
            }
        }
        public bool TestYoung(Hva address) { lock (this) return Young.Contains(address.PageNumber); }
        public void Release() { }
    }

    private const ulong Pages = 128;

    /// <summary>Age the active list until nothing on it is young: the pages on it go inactive.</summary>
    private static void AgeAll(HostMemory host)
    {
        host.Reclaim.AgeActive(4096, ignoreYoung: false);   // clears the accessed bits, keeps them active
        host.Reclaim.AgeActive(4096, ignoreYoung: false);   // nothing young now: all go inactive
    }

    private static HashSet<ulong> Pick(HostAddressSpace mm, Hva a, ResidentPagePick pick, int count)
    {
        var picked = new Hva[count];
        int n = mm.PickResidentPages(a, Pages * Page.Size, pick, picked);
        return picked.Take(n).Select(h => h.PageNumber - a.PageNumber).ToHashSet();
    }

    private static HashSet<ulong> Range(ulong first, ulong count) => Enumerable.Range((int)first, (int)count).Select(i => (ulong)i).ToHashSet();

    [Fact]
    public void Pick_HostAccessedBits_ColdSkipsTouchedHotTakesThem()
    {
        using var host = NewHost(frames: 512);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(Pages * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < Pages; i++) WritePage(mm, a.Add(i * Page.Size), 1, 1);
        AgeAll(host);
        Assert.Equal(0, host.ActiveFrames);
        var touched = Range(40, 20);
        foreach (ulong p in touched) AssertPage(mm, a.Add(p * Page.Size), 1, 1, "touch");

        var cold = Pick(mm, a, ResidentPagePick.Cold, 100);
        Assert.Equal(100, cold.Count);
        Assert.Empty(cold.Intersect(touched));
        Assert.Equal(touched, Pick(mm, a, ResidentPagePick.Hot, 20));
        // Cold falls back to touched pages only when the untouched ones run out.
        Assert.Equal(Range(0, Pages), Pick(mm, a, ResidentPagePick.Cold, (int)Pages));
    }

    [Fact]
    public void Pick_SecondaryAccessedBits_ColdSkipsThemHotTakesThemAndNoneIsCleared()
    {
        using var host = NewHost(frames: 512);
        var mm = host.CreateAddressSpace();
        var ept = new YoungPages();
        mm.Notifiers.Register(ept);
        var a = mm.Map(Pages * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < Pages; i++) WritePage(mm, a.Add(i * Page.Size), 2, 1);
        AgeAll(host);
        var used = new ulong[] { 3, 17, 18, 19, 90, 127 }.ToHashSet();
        lock (ept) foreach (ulong p in used) ept.Young.Add(a.PageNumber + p);
        int clears = ept.Clears;

        var cold = Pick(mm, a, ResidentPagePick.Cold, (int)Pages - used.Count);
        Assert.Empty(cold.Intersect(used));
        Assert.Equal(used, Pick(mm, a, ResidentPagePick.Hot, used.Count));
        Assert.Equal(used, Pick(mm, a, ResidentPagePick.Hot, used.Count));   // picking cleared nothing
        Assert.Equal(clears, ept.Clears);
        Assert.Equal(used.Count, ept.Young.Count);
    }

    [Fact]
    public void Pick_NoAccessedBits_FollowsTheLruInactiveBeforeActive()
    {
        using var host = NewHost(frames: 512);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(Pages * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 64; i++) WritePage(mm, a.Add(i * Page.Size), 3, 1);
        AgeAll(host);                                          // pages 0..63: inactive
        for (ulong i = 64; i < Pages; i++) WritePage(mm, a.Add(i * Page.Size), 3, 1);
        host.Reclaim.AgeActive(4096, ignoreYoung: false);      // pages 64..127: active, accessed bits cleared
        Assert.Equal(64, host.ActiveFrames);
        Assert.Equal(64, host.InactiveFrames);

        Assert.Equal(Range(0, 64), Pick(mm, a, ResidentPagePick.Cold, 64));
        Assert.Equal(Range(64, 64), Pick(mm, a, ResidentPagePick.Hot, 64));
    }

    [Fact]
    public void Pick_RangeAndResidency_OnlyResidentPagesOfTheRange()
    {
        using var host = NewHost(frames: 512);
        var mm = host.CreateAddressSpace();
        var other = host.CreateAddressSpace();
        var a = mm.Map(Pages * Page.Size, HostProtection.ReadWrite);
        var b = other.Map(Pages * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < Pages; i++)
        {
            WritePage(mm, a.Add(i * Page.Size), 4, 1);
            WritePage(other, b.Add(i * Page.Size), 4, 1);
        }
        mm.PageOut(a, 32 * Page.Size);                       // pages 0..31 leave memory
        var picked = new Hva[Pages];
        foreach (var pick in new[] { ResidentPagePick.Cold, ResidentPagePick.Hot })
        {
            int n = mm.PickResidentPages(a.Add(16 * Page.Size), 64 * Page.Size, pick, picked);
            Assert.Equal(Range(32, 48), picked.Take(n).Select(h => h.PageNumber - a.PageNumber).ToHashSet());
        }
        int listed = mm.ResidentPagesIn(a, Pages * Page.Size, picked);
        Assert.Equal(Enumerable.Range(32, 96).Select(i => a.Add((ulong)i * Page.Size)), picked.Take(listed));
        Assert.Equal(10, mm.ResidentPagesIn(a, Pages * Page.Size, picked.AsSpan(0, 10)));
        Assert.Equal(0, mm.PickResidentPages(a, Pages * Page.Size, ResidentPagePick.Cold, Span<Hva>.Empty));
    }
}
