using ToyVmm.Mmu.Secondary.Shadow;
using Xunit;

namespace ToyVmm.Mmu.Tests.Secondary.Shadow;

/// <summary>The shadow MMU's one-word reverse map (ShadowRmap): the word, the spill list, the chunks and the page ids.</summary>
public sealed class ShadowRmapTests
{
    private static ShadowPage LeafPage(ShadowRmap map, ulong gfn)
    {
        var page = new ShadowPage(gfn, new ShadowRole(1, 0, false, Direct: false));
        map.Register(page);
        return page;
    }

    private static List<(ShadowPage, int)> LeavesOf(ShadowRmap map, ulong gfn)
    {
        var list = new List<(ShadowPage, int)>();
        Assert.True(map.TryGet(gfn, out var head));
        foreach (var leaf in head) list.Add(leaf);
        return list;
    }

    [Fact]
    public void AddLeaf_SecondLeafOfAFrame_SpillsAndBothAreFound()
    {
        var map = new ShadowRmap();
        var a = LeafPage(map, 1);
        var b = LeafPage(map, 2);
        map.AddLeaf(100, a, 7);
        map.AddLeaf(100, b, 9);
        map.AddDirect(100);

        Assert.Equal(1, map.Count);
        Assert.Equal(2, map.Leaves);
        Assert.True(map.TryGet(100, out var head));
        Assert.True(head.Direct);
        Assert.Equal(3, head.Count);
        Assert.Equal([(a, 7), (b, 9)], LeavesOf(map, 100));
    }

    [Fact]
    public void RemoveLeaf_TheWordsLeafWithASpill_MovesASpilledLeafIntoTheWord()
    {
        var map = new ShadowRmap();
        var a = LeafPage(map, 1);
        map.AddLeaf(5, a, 1);
        map.AddLeaf(5, a, 2);
        map.AddLeaf(5, a, 3);

        map.RemoveLeaf(5, a, 1);

        Assert.Equal(2, map.Leaves);
        Assert.Equal([(a, 3), (a, 2)], LeavesOf(map, 5));
        map.RemoveLeaf(5, a, 2);
        map.RemoveLeaf(5, a, 3);
        Assert.False(map.TryGet(5, out _));
        Assert.Equal(0, map.Count);
        Assert.Equal(0, map.Leaves);
    }

    [Fact]
    public void RemoveDirect_LeavesTheLeaf_AndTheLastEntryEmptiesTheFrame()
    {
        var map = new ShadowRmap();
        var a = LeafPage(map, 1);
        map.AddDirect(600);
        map.AddLeaf(600, a, 4);

        map.RemoveDirect(600);
        Assert.True(map.TryGet(600, out var head));
        Assert.False(head.Direct);
        Assert.Equal(1, head.Count);

        map.RemoveLeaf(600, a, 4);
        Assert.False(map.TryGet(600, out _));
        Assert.Equal(0, map.Count);
    }

    [Fact]
    public void Remove_TakesEveryEntryOfTheFrameAtOnce()
    {
        var map = new ShadowRmap();
        var a = LeafPage(map, 1);
        map.AddLeaf(7, a, 0);
        map.AddLeaf(7, a, 1);
        map.AddDirect(7);
        map.AddLeaf(8, a, 2);

        Assert.True(map.Remove(7, out var head));

        Assert.True(head.Direct);
        Assert.Equal(2, head.LeafCount);
        Assert.False(map.TryGet(7, out _));
        Assert.Equal(1, map.Count);
        Assert.Equal(1, map.Leaves);
        Assert.False(map.Remove(7, out _));
    }

    [Theory]
    [InlineData(0UL, 10UL)]            // probed frame by frame
    [InlineData(0UL, ulong.MaxValue)]  // walked chunk by chunk
    public void KeysIn_SmallAndLargeRanges_FindTheMappedFramesInside(ulong first, ulong last)
    {
        var map = new ShadowRmap();
        map.AddDirect(3);
        map.AddDirect(9);
        map.AddDirect(5000);
        var keys = map.KeysIn(first, last);
        keys.Sort();
        Assert.Equal(last == 10 ? [3UL, 9UL] : [3UL, 9UL, 5000UL], keys);
    }

    [Fact]
    public void Unregister_GivesTheIdBackForTheNextPage()
    {
        var map = new ShadowRmap();
        var a = LeafPage(map, 1);
        int id = a.Id;
        Assert.NotEqual(0, id);
        map.Unregister(a);
        Assert.Equal(0, a.Id);
        var b = LeafPage(map, 2);
        Assert.Equal(id, b.Id);
    }

    [Fact]
    public void AddDirect_AfterAChunkWasDropped_ReusesItEmptyAndFindsOnlyTheNewFrames()
    {
        var map = new ShadowRmap();
        var a = LeafPage(map, 1);
        map.AddDirect(3);                   // chunk 0
        map.AddLeaf(3, a, 4);
        map.Remove(3, out _);               // its last frame: chunk 0 is dropped, kept as a spare
        Assert.Equal(0, map.Count);

        map.AddDirect(512 * 7 + 9);         // chunk 7, made from the spare
        Assert.Equal(1, map.Count);
        Assert.False(map.TryGet(3, out _));
        Assert.False(map.TryGet(512 * 7 + 3, out _));   // the spare's old word came back empty
        Assert.True(map.TryGet(512 * 7 + 9, out var head));
        Assert.True(head.Direct);
        Assert.Equal(0, head.LeafCount);
        Assert.Equal([512UL * 7 + 9], map.KeysIn(0, ulong.MaxValue - 1));
    }
}
