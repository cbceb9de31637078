using ToyVmm.Mmu.Notifiers;
using Xunit;

namespace ToyVmm.Mmu.Tests.Notifiers;

/// <summary>A batch's page list: what it covers, and clipped to a subscriber's part of the space (a grant).</summary>
public class InvalidateRangeTests
{
    private static InvalidateRange Batch(params ulong[] pages) =>
        new(Hva.FromPageNumber(pages[0]), Hva.FromPageNumber(pages[^1] + 1), InvalidateEvent.Clear, true) { BatchPages = pages };

    [Fact]
    public void Covers_Batch_OnlyListedPages()
    {
        var b = Batch(3, 8, 9, 20);
        Assert.Equal(4UL, b.Pages);
        Assert.True(b.Covers(8));
        Assert.False(b.Covers(10));
        Assert.False(b.Covers(21));
        var range = new InvalidateRange(Hva.FromPageNumber(3), Hva.FromPageNumber(21), InvalidateEvent.Clear, true);
        Assert.True(range.Covers(10));
        Assert.Equal(18UL, range.Pages);
    }

    [Fact]
    public void TryClip_Batch_KeepsThePagesInsideAndTheirSpan()
    {
        var b = Batch(3, 8, 9, 20);
        Assert.True(b.TryClip(Hva.FromPageNumber(5), Hva.FromPageNumber(15), out var c));
        Assert.Equal([8UL, 9UL], c.BatchPages!);
        Assert.Equal(Hva.FromPageNumber(8), c.Start);
        Assert.Equal(Hva.FromPageNumber(10), c.End);
        Assert.False(b.TryClip(Hva.FromPageNumber(10), Hva.FromPageNumber(20), out _));   // no listed page inside
        Assert.True(b.TryClip(Hva.FromPageNumber(0), Hva.FromPageNumber(100), out var whole));
        Assert.Equal(b, whole);
    }
}
