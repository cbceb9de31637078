using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using Xunit;

namespace ToyVmm.Mmu.Tests.Secondary.Contract;

/// <summary>
/// The hosts without notifiers (docs/DESIGN.md "Why notifiers exist"), over the real
/// simulated kernel: under pin every mapping holds its page, so reclaim and page-out
/// cannot free it (coherent, but locked in); under none the host frees frames that
/// secondary entries still map, the checker names the first one, and a freed frame
/// handed to another page shows that page's data through the stale entry.
/// </summary>
public abstract unsafe partial class SecondaryMmuContractTests
{
    [Fact]
    public void Pin_ReclaimAndPageOut_CannotFreeAMappedPage_ItStaysCoherent()
    {
        Make(HostKind.Real, NotifierProtocol.Pin);
        for (int page = 0; page < 8; page++) Touch(page)[0] = (byte)(page + 1);
        var frames = new Hfn[8];
        for (int page = 0; page < 8; page++) Assert.True(Maps(Gpa.FromPageNumber((ulong)page), out frames[page]));

        _host.ReclaimNow(RamPages, ignoreAccessed: true);
        Assert.Equal(0, _manager.PageOut(new Gpa(0), 8 * Page.Size));

        Assert.True(_host.Stats.ReclaimBusy >= 8, $"reclaim and page-out found the pinned pages busy ({_host.Stats.ReclaimBusy})");
        for (int page = 0; page < 8; page++)
        {
            Assert.True(Maps(Gpa.FromPageNumber((ulong)page), out var now));
            Assert.Equal(frames[page], now);
            Assert.True(_binding.FrameBacks(now, HvaOf(page)), "the host still maps the pinned frame");
            Assert.Equal((byte)(page + 1), Touch(page, AccessKind.Read)[0]);
        }
        AssertNoViolation();
    }

    [Fact]
    public void Pin_Discard_DropsTheMappingAndItsPin_ThePageReadsZeroAndTheFrameIsFreed()
    {
        Make(HostKind.Real, NotifierProtocol.Pin);
        int free = _host.FreeFrames;
        for (int page = 0; page < 4; page++) Touch(page)[0] = 0x5a;
        Assert.Equal(free - 4, _host.FreeFrames);

        Assert.Equal(4, _manager.Discard(new Gpa(0), 4 * Page.Size));

        Assert.False(Maps(new Gpa(0), out _));
        Assert.Equal(free, _host.FreeFrames);   // pin and mapping both gone: the frames are free again
        Assert.Equal(0, Touch(0, AccessKind.Read)[0]);
        AssertNoViolation();
    }

    [Fact]
    public void Pin_MmuDisposed_GivesEveryPinBack()
    {
        Make(HostKind.Real, NotifierProtocol.Pin);
        int free = _host.FreeFrames;
        for (int page = 0; page < 6; page++) Touch(page);
        ((IDisposable)_mmu).Dispose();
        // Without the pins the host can free every page again.
        Assert.Equal(6, _manager.Discard(new Gpa(0), 6 * Page.Size));
        Assert.Equal(free, _host.FreeFrames);
    }

    [Fact]
    public void None_PageOutOfAMappedPage_CheckerNamesTheFreedFrameAndTheGuestPage()
    {
        Make(HostKind.Real, NotifierProtocol.None);
        var gpa = Gpa.FromPageNumber(5);
        Touch(5)[0] = 0x77;
        Assert.True(Maps(gpa, out var frame));

        if (HoldsPageReferences)
        {
            // Its own reference pins the page: the host pages out nothing and frees nothing.
            Assert.Equal(0, _manager.PageOut(gpa, Page.Size));
            Assert.Equal(0, _checker.ViolationCount);
            Assert.True(Maps(gpa, out var kept));
            Assert.Equal(frame, kept);
            Assert.Equal(0x77, Touch(5, AccessKind.Read)[0]);
            return;
        }
        Assert.Equal(1, _manager.PageOut(gpa, Page.Size));

        var v = _checker.FirstViolation;
        Assert.NotNull(v);
        output.WriteLine(v.ToString());
        Assert.Contains("freed while a secondary entry still maps it", v.Rule);
        Assert.Equal(frame, v.Frame);
        Assert.Equal(gpa, v.Gpa);
        Assert.Contains(v.Events, e => e.Kind == "Install" && e.Page == gpa);
        Assert.Contains(v.Events, e => e.Kind == "FrameFree" && e.Frame == frame);
        Assert.True(Maps(gpa, out var still));   // nobody told the MMU: the entry is still there
        Assert.Equal(frame, still);
    }

    [Fact]
    public void None_FreedFrameHandedToAnotherPage_TheStaleEntryShowsThatPagesData()
    {
        Make(HostKind.Real, NotifierProtocol.None);
        Touch(1)[0] = 0x11;
        Assert.True(Maps(Gpa.FromPageNumber(1), out var first));
        if (HoldsPageReferences)
        {
            // The page stays pinned: no frame is freed to hand to another page.
            Assert.Equal(0, _manager.PageOut(Gpa.FromPageNumber(1), Page.Size));
            Touch(2)[0] = 0x22;
            Assert.True(Maps(Gpa.FromPageNumber(2), out var other));
            Assert.NotEqual(first, other);
            Assert.Equal(0x11, Touch(1, AccessKind.Read)[0]);
            Assert.Equal(0, _checker.ViolationCount);
            return;
        }
        Assert.Equal(1, _manager.PageOut(Gpa.FromPageNumber(1), Page.Size));

        // The next zero-fill takes the frame the page-out just freed (the free list is a stack).
        Touch(2)[0] = 0x22;
        Assert.True(Maps(Gpa.FromPageNumber(2), out var second));
        Assert.Equal(first, second);
        Assert.Equal(0x22, Touch(1, AccessKind.Read)[0]);   // page 1 reads page 2's data
        Assert.True(_checker.ViolationCount > 0);
    }
}
