using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;
using Xunit;

namespace ToyVmm.Mmu.Tests.Notifiers;

/// <summary>
/// The two protocols of a host without notifiers (docs/DESIGN.md "Why notifiers exist"):
/// pin, where every secondary mapping keeps its page's reference, and none, where nothing
/// keeps the secondary entries coherent. Both halves of each strategy, without a host or an MMU.
/// </summary>
public class NotifierlessProtocolTests
{
    private sealed class Recorder(List<string> log) : IMmuNotifierSubscriber
    {
        public bool InvalidateRangeStart(in InvalidateRange range) { log.Add($"start {range.Cause}"); return true; }
        public void InvalidateRangeEnd(in InvalidateRange range) => log.Add($"end {range.Cause}");
        public void InvalidatePage(Hva address) => log.Add("page");
        public bool ClearFlushYoung(Hva start, Hva end) { log.Add("clear-flush-young"); return true; }
        public bool ClearYoung(Hva start, Hva end) { log.Add("clear-young"); return true; }
        public bool TestYoung(Hva address) { log.Add("test-young"); return true; }
    }

    /// <summary>The references a secondary MMU gives back or marks, as the strategy asks.</summary>
    private sealed class References : IUserPageReferences
    {
        public readonly List<string> Log = [];
        public void PutUserPage(Hfn frame, PageRelease how) => Log.Add($"put {frame} {how}");
        public void SetPageDirty(Hfn frame) => Log.Add($"dirty {frame}");
    }

    private static InvalidateRange Range(InvalidateCause cause) =>
        new(new Hva(0x1000), new Hva(0x3000), InvalidateEvent.Clear, MayBlock: true) { Cause = cause };

    private static (MmuNotifierRegistry Registry, List<string> Log) Registry(NotifierProtocol kind)
    {
        var log = new List<string>();
        var reg = new MmuNotifierRegistry { Protocol = NotifierProtocols.Of(kind) };
        reg.Register(new Recorder(log));
        return (reg, log);
    }

    private static List<string> Invalidate(NotifierProtocol kind, InvalidateCause cause)
    {
        var (reg, log) = Registry(kind);
        Assert.True(reg.InvalidateRangeStart(Range(cause)));
        reg.InvalidateRangeEnd(Range(cause));
        return log;
    }

    [Theory]
    [InlineData(InvalidateCause.Reclaim)]
    [InlineData(InvalidateCause.PageOut)]
    [InlineData(InvalidateCause.Protect)]
    public void Pin_KernelOwnChanges_NobodyIsTold(InvalidateCause cause)
    {
        Assert.Empty(Invalidate(NotifierProtocol.Pin, cause));
        Assert.False(PinProtocol.Instance.SubscribersHear(Range(cause)));
    }

    [Theory]
    [InlineData(InvalidateCause.Discard)]
    [InlineData(InvalidateCause.Unmap)]
    public void Pin_TheGuestMappingGoesAway_StartAndEndAsUnderTheSequence(InvalidateCause cause)
    {
        Assert.Equal([$"start {cause}", $"end {cause}"], Invalidate(NotifierProtocol.Pin, cause));
        Assert.True(PinProtocol.Instance.SubscribersHear(Range(cause)));
    }

    [Theory]
    [InlineData(InvalidateCause.Reclaim)]
    [InlineData(InvalidateCause.PageOut)]
    [InlineData(InvalidateCause.Discard)]
    [InlineData(InvalidateCause.Unmap)]
    [InlineData(InvalidateCause.Protect)]
    public void None_AnyChange_NobodyIsTold(InvalidateCause cause)
    {
        Assert.Empty(Invalidate(NotifierProtocol.None, cause));
        Assert.False(NoNotifierProtocol.Instance.SubscribersHear(Range(cause)));
    }

    [Theory]
    [InlineData(NotifierProtocol.Pin)]
    [InlineData(NotifierProtocol.None)]
    public void Aging_WithoutNotifiers_NobodyIsAskedAndNothingIsYoung(NotifierProtocol kind)
    {
        var (reg, log) = Registry(kind);
        Assert.False(reg.ClearFlushYoung(new Hva(0x1000), new Hva(0x2000)));
        Assert.False(reg.ClearYoung(new Hva(0x1000), new Hva(0x2000)));
        Assert.False(reg.TestYoung(new Hva(0x1000)));
        Assert.Empty(log);
    }

    [Theory]
    [InlineData(NotifierProtocol.Sequence)]
    [InlineData(NotifierProtocol.Broken2008)]
    public void Aging_WithNotifiers_EverySubscriberIsAsked(NotifierProtocol kind)
    {
        var (reg, log) = Registry(kind);
        Assert.True(reg.ClearFlushYoung(new Hva(0x1000), new Hva(0x2000)));
        Assert.True(reg.ClearYoung(new Hva(0x1000), new Hva(0x2000)));
        Assert.True(reg.TestYoung(new Hva(0x1000)));
        Assert.Equal(["clear-flush-young", "clear-young", "test-young"], log);
    }

    [Fact]
    public void Pin_NewMapping_KeepsTheFaultReferenceAsItsPinAndHandsTheDirtyBitOver()
    {
        var refs = new References();
        Assert.Equal(1, PinProtocol.Instance.FaultInstalled(refs, new Hfn(7), PageRelease.Dirty, newMapping: true));
        Assert.Equal(1, PinProtocol.Instance.FaultInstalled(refs, new Hfn(8), PageRelease.Clean, newMapping: true));
        Assert.Equal([$"dirty {new Hfn(7)}"], refs.Log);   // no reference given back
    }

    [Fact]
    public void Pin_RefreshedMapping_GivesTheExtraReferenceBack()
    {
        var refs = new References();
        Assert.Equal(0, PinProtocol.Instance.FaultInstalled(refs, new Hfn(7), PageRelease.Dirty, newMapping: false));
        Assert.Equal([$"put {new Hfn(7)} Dirty"], refs.Log);
    }

    [Fact]
    public void Pin_MappingDropped_GivesThePinBack()
    {
        var refs = new References();
        Assert.Equal(-1, PinProtocol.Instance.MappingDropped(refs, new Hfn(7)));
        Assert.Equal([$"put {new Hfn(7)} Unused"], refs.Log);
    }

    [Theory]
    [InlineData(NotifierProtocol.Sequence)]
    [InlineData(NotifierProtocol.Broken2008)]
    [InlineData(NotifierProtocol.None)]
    public void Unpinned_FaultInstalled_GivesTheReferenceBackAndDropKeepsNothing(NotifierProtocol kind)
    {
        var protocol = NotifierProtocols.Of(kind);
        var refs = new References();
        Assert.Equal(0, protocol.FaultInstalled(refs, new Hfn(3), PageRelease.Clean, newMapping: true));
        Assert.Equal(0, protocol.FaultInstalled(refs, new Hfn(3), PageRelease.Dirty, newMapping: false));
        Assert.Equal(0, protocol.MappingDropped(refs, new Hfn(3)));
        Assert.Equal([$"put {new Hfn(3)} Clean", $"put {new Hfn(3)} Dirty"], refs.Log);
    }

    [Fact]
    public void FaultRecheck_PinFollowsTheSequence_NoneNever()
    {
        var mmuLock = new Lock();
        var seq = new InvalidateSequence(mmuLock);
        long s0 = seq.Sequence;
        lock (mmuLock) seq.BeginLocked(4, 7);
        Assert.True(PinProtocol.Instance.FaultShouldWait(seq, 5));
        Assert.False(NoNotifierProtocol.Instance.FaultShouldWait(seq, 5));
        lock (mmuLock)
        {
            Assert.True(PinProtocol.Instance.FaultMustRetryLocked(seq, 5, s0));
            Assert.False(NoNotifierProtocol.Instance.FaultMustRetryLocked(seq, 5, s0));
            seq.EndLocked(4, 7);
            Assert.True(PinProtocol.Instance.FaultMustRetryLocked(seq, 9, s0));   // the sequence moved
            Assert.False(NoNotifierProtocol.Instance.FaultMustRetryLocked(seq, 9, s0));
        }
    }

    [Fact]
    public void Names_EveryKind_RoundTripsAndNamesItsStrategy()
    {
        Assert.Equal(["sequence", "broken-2008", "pin", "none"], NotifierProtocols.Names);
        foreach (var kind in Enum.GetValues<NotifierProtocol>())
        {
            string name = NotifierProtocols.NameOf(kind);
            Assert.True(NotifierProtocols.TryParse(name, out var parsed));
            Assert.Equal(kind, parsed);
            Assert.Equal(kind, NotifierProtocols.Of(kind).Kind);
        }
        Assert.False(NotifierProtocols.TryParse("Pin", out _));
        Assert.False(NotifierProtocols.TryParse("pinned", out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => NotifierProtocols.NameOf((NotifierProtocol)99));
    }
}
