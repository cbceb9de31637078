using Xunit;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Tests.Notifiers;

/// <summary>The two protocols behind the registry: how the host's start and end reach the subscribers, and what a fault re-checks.</summary>
public class NotifierProtocolTests
{
    /// <summary>Implements only what a subscriber must: start and end. Everything else is the contract's default.</summary>
    private sealed class Minimal(List<string> log) : IMmuNotifierSubscriber
    {
        public bool InvalidateRangeStart(in InvalidateRange range) { log.Add("start"); return true; }
        public void InvalidateRangeEnd(in InvalidateRange range) => log.Add("end");
    }

    private sealed class PageRecorder(List<string> log) : IMmuNotifierSubscriber
    {
        public bool InvalidateRangeStart(in InvalidateRange range) { log.Add("start"); return true; }
        public void InvalidateRangeEnd(in InvalidateRange range) => log.Add("end");
        public void InvalidatePage(Hva address) => log.Add($"page {address}");
    }

    private static readonly InvalidateRange TwoPages = new(new Hva(0x1000), new Hva(0x3000), InvalidateEvent.Clear, MayBlock: true);

    [Fact]
    public void Registry_ByDefault_FollowsTheSequenceProtocol()
    {
        var reg = new MmuNotifierRegistry();
        Assert.Same(SequenceProtocol.Instance, reg.Protocol);
        Assert.Equal(NotifierProtocol.Sequence, reg.Protocol.Kind);
    }

    [Fact]
    public void Broken2008_StartSaysNothing_EndSendsInvalidatePagePerPage()
    {
        var log = new List<string>();
        var reg = new MmuNotifierRegistry { Protocol = NotifierProtocols.Of(NotifierProtocol.Broken2008) };
        reg.Register(new PageRecorder(log));
        Assert.True(reg.InvalidateRangeStart(TwoPages));
        Assert.Empty(log);
        reg.InvalidateRangeEnd(TwoPages);
        Assert.Equal([$"page {new Hva(0x1000)}", $"page {new Hva(0x2000)}"], log);
    }

    [Fact]
    public void Protocol_ChangedAfterASubscriberRegistered_Throws()
    {
        var reg = new MmuNotifierRegistry();
        reg.Register(new Minimal([]));
        Assert.Throws<InvalidOperationException>(() => reg.Protocol = Broken2008Protocol.Instance);
        Assert.Same(SequenceProtocol.Instance, reg.Protocol);
    }

    [Fact]
    public void MinimalSubscriber_OptionalCallbacks_AreNotUsedAndNothingToRelease()
    {
        var log = new List<string>();
        var reg = new MmuNotifierRegistry();
        reg.Register(new Minimal(log));
        Assert.False(reg.TestYoung(new Hva(0x1000)));
        Assert.False(reg.ClearYoung(new Hva(0x1000), new Hva(0x2000)));
        Assert.False(reg.ClearFlushYoung(new Hva(0x1000), new Hva(0x2000)));
        reg.Release();
        Assert.Empty(log);
    }

    [Fact]
    public void Broken2008_Batch_EndSendsInvalidatePageForListedPagesOnly()
    {
        var log = new List<string>();
        var reg = new MmuNotifierRegistry { Protocol = NotifierProtocols.Of(NotifierProtocol.Broken2008) };
        reg.Register(new PageRecorder(log));
        var batch = new InvalidateRange(new Hva(0x1000), new Hva(0x6000), InvalidateEvent.Clear, MayBlock: true) { BatchPages = [1, 3, 5] };
        Assert.True(reg.InvalidateRangeStart(batch));
        reg.InvalidateRangeEnd(batch);
        Assert.Equal([$"page {new Hva(0x1000)}", $"page {new Hva(0x3000)}", $"page {new Hva(0x5000)}"], log);
    }

    [Fact]
    public void Sequence_Batch_EachSubscriberHearsOneStartAndOneEnd()
    {
        var log = new List<string>();
        var reg = new MmuNotifierRegistry();
        reg.Register(new PageRecorder(log));
        var batch = new InvalidateRange(new Hva(0x1000), new Hva(0x6000), InvalidateEvent.Clear, MayBlock: true) { BatchPages = [1, 3, 5] };
        Assert.True(reg.InvalidateRangeStart(batch));
        reg.InvalidateRangeEnd(batch);
        Assert.Equal(["start", "end"], log);
    }

    [Fact]
    public void FaultRecheck_SequenceRetriesOverARangeInProgress_Broken2008Never()
    {
        var mmuLock = new Lock();
        var seq = new InvalidateSequence(mmuLock);
        long s0 = seq.Sequence;
        lock (mmuLock) seq.BeginLocked(4, 7);
        Assert.True(SequenceProtocol.Instance.FaultShouldWait(seq, 5));
        Assert.False(Broken2008Protocol.Instance.FaultShouldWait(seq, 5));
        lock (mmuLock)
        {
            Assert.True(SequenceProtocol.Instance.FaultMustRetryLocked(seq, 5, s0));
            Assert.False(Broken2008Protocol.Instance.FaultMustRetryLocked(seq, 5, s0));
            seq.EndLocked(4, 7);
            Assert.True(SequenceProtocol.Instance.FaultMustRetryLocked(seq, 9, s0));   // the sequence moved
        }
    }

    [Fact]
    public void Of_UnknownKind_Throws() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => NotifierProtocols.Of((NotifierProtocol)99));
}
