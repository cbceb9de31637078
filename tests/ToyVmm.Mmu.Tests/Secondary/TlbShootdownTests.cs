using Xunit;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Tests.Secondary;

/// <summary>
/// Flush generations and requests on <see cref="VcpuLink"/>, the vCPU's half of
/// the shootdown. How a secondary MMU drives the shootdown steps (filter, remote
/// shootdown of a quiescent vCPU, the wait for one inside an access) is in the
/// secondary MMU contract (Contract/SecondaryMmuContractTests.cs).
/// </summary>
public sealed class TlbShootdownTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    [Fact]
    public void AcknowledgeFlush_OfEarlierRanges_DoesNotAnswerALaterPost()
    {
        var link = new VcpuLink(0);
        link.EnterGuest();
        long first = link.RequestFlush(5, 5);
        Assert.Equal(VcpuLink.FlushRequest, link.TakeRequests());
        var ranges = new (ulong, ulong)[VcpuLink.MaxPendingRanges];
        Assert.Equal(1, link.TakeFlushRanges(ranges));
        Assert.Equal((5UL, 5UL), ranges[0]);
        long second = link.RequestFlush(9, 10);   // posted while the vCPU flushes the first
        link.AcknowledgeFlush();
        Assert.True(link.IsFlushed(first));
        Assert.False(link.IsFlushed(second));
        Assert.Equal(VcpuLink.FlushRequest, link.TakeRequests());
        Assert.Equal(1, link.TakeFlushRanges(ranges));
        Assert.Equal((9UL, 10UL), ranges[0]);
        link.AcknowledgeFlush();
        Assert.True(link.IsFlushed(second));
    }

    [Fact]
    public void RequestFlush_MoreRangesThanKept_OrTheWholeSpace_TakesTheWholeTlb()
    {
        var link = new VcpuLink(0);
        link.EnterGuest();
        var ranges = new (ulong, ulong)[VcpuLink.MaxPendingRanges];
        for (ulong g = 0; g <= VcpuLink.MaxPendingRanges; g++) link.RequestFlush(g, g);
        Assert.Equal(-1, link.TakeFlushRanges(ranges));
        link.RequestFlush(3, 3);
        link.RequestFlush();
        Assert.Equal(-1, link.TakeFlushRanges(ranges));
        link.RequestFlush(3, 4);
        Assert.Equal(1, link.TakeFlushRanges(ranges));   // taking empties the list
    }

    [Fact]
    public void RequestFlush_OutsideGuestMode_NeedsNoWait_AndIsTakenOnEntry()
    {
        var link = new VcpuLink(0);
        Assert.Equal(-1, link.RequestFlush(7, 7));
        link.EnterGuest();
        Assert.Equal(VcpuLink.FlushRequest, link.TakeRequests());
        var ranges = new (ulong, ulong)[VcpuLink.MaxPendingRanges];
        Assert.Equal(1, link.TakeFlushRanges(ranges));
        Assert.Equal((7UL, 7UL), ranges[0]);
    }

    [Fact]
    public void DetachTlb_WaitsForPinnedUsers_AndLaterPinsSeeNone()
    {
        var link = new VcpuLink(0);
        link.AttachTlb(new ScriptedTlb());
        Assert.NotNull(link.PinTlb());
        var detach = new Thread(link.DetachTlb);
        detach.Start();
        Assert.False(detach.Join(TimeSpan.FromMilliseconds(100)));
        link.UnpinTlb();
        Assert.True(detach.Join(Patience));
        Assert.Null(link.PinTlb());
    }

    [Theory]
    [InlineData(42L, true)]    // its progress counter never moves: descheduled
    [InlineData(-1L, false)]   // cannot tell: no yield asked for
    public void FlushLocked_WaitingForAStalledVcpu_AsksTheRunningOnesToYieldOnce(long progress, bool yieldExpected)
    {
        var stalled = new VcpuLink(0);
        var running = new VcpuLink(1);
        stalled.AttachTlb(new ScriptedTlb { Holds = true, ProgressValue = progress });
        running.AttachTlb(new ScriptedTlb { Holds = false });
        stalled.EnterGuest();
        running.EnterGuest();
        var vcpus = new[] { stalled, running };
        var flush = new Thread(() =>
        {
            var counts = new ShootdownCounts();
            VcpuShootdown.FlushLocked(vcpus, null, ref counts, ulong.MaxValue, 4, 4);
        });
        flush.Start();
        Assert.False(flush.Join(TimeSpan.FromMilliseconds(100)));   // waits for the stalled vCPU
        int asked = running.TakeRequests();
        Assert.Equal(yieldExpected ? VcpuLink.YieldRequest : 0, asked & VcpuLink.YieldRequest);
        Assert.Equal(VcpuLink.FlushRequest, stalled.TakeRequests());
        stalled.TakeFlushRanges(new (ulong, ulong)[VcpuLink.MaxPendingRanges]);
        stalled.AcknowledgeFlush();
        Assert.True(flush.Join(Patience));
        Assert.Equal(0, running.TakeRequests());                   // once, not for every round of the wait
    }
}
