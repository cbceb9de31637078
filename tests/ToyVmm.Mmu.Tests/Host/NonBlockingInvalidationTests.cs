using ToyVmm.Mmu.Host;
using Xunit;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Host;

/// <summary>
/// A notifier subscriber that cannot complete a non-blockable invalidation start (its
/// lock is taken, it would have to wait for a vCPU). As in Linux, where
/// <c>mmu_notifier_invalidate_range_start_nonblock</c> returns -EAGAIN and the caller
/// (the OOM reaper) leaves the range alone and tries again later, the host changes
/// nothing: the subscribers already started are ended, reclaim puts the page back on
/// its LRU list as busy, the refusal is counted (<c>InvalidateRetries</c>), and the
/// background reclaimer asks again, blocking after <see cref="HostMemoryOptions.NonBlockingTries"/>
/// refusals. Nothing hangs and no page loses its contents.
/// </summary>
public class NonBlockingInvalidationTests
{
    [Fact]
    public void ShrinkOnce_SubscriberRefusesEveryNonBlockingStart_NothingFreedNothingChanged()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var sub = new RecordingSubscriber { RefuseNonBlocking = int.MaxValue };
        mm.Notifiers.Register(sub);
        var a = mm.Map(48 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 48; i++) WritePage(mm, a.Add(i * Page.Size), 21, i + 1);
        int free = host.FreeFrames;
        for (int round = 0; round < 20; round++)
            Assert.Equal(0, host.Reclaim.ShrinkOnce(priority: 2, mayBlock: false));
        Assert.Equal(free, host.FreeFrames);
        Assert.Equal(48, mm.ResidentPages);
        Assert.True(host.Stats.InvalidateRetries >= 20, $"refusals counted: {host.Stats.InvalidateRetries}");
        Assert.Empty(sub.Starts);   // a refused start is not a start: no end is owed
        for (ulong i = 0; i < 48; i++) AssertPage(mm, a.Add(i * Page.Size), 21, i + 1, "after refused reclaim");
        AssertConsistent(host, "after refused non-blocking starts");
    }

    [Fact]
    public async Task BackgroundReclaimer_SubscriberRefusesEveryNonBlockingStart_FallsBackToBlockingContentsKept()
    {
        using var host = NewHost(frames: 256, min: 8, low: 32, high: 64);
        var mm = host.CreateAddressSpace();
        var sub = new RecordingSubscriber { RefuseNonBlocking = int.MaxValue };
        mm.Notifiers.Register(sub);
        var svc = new HostReclaimerService(host);
        await svc.StartAsync(CancellationToken.None);
        const ulong pages = 600;   // more than the pool: reclaim must page out
        var a = mm.Map(pages * Page.Size, HostProtection.ReadWrite);
        try
        {
            for (ulong i = 0; i < pages; i++) WritePage(mm, a.Add(i * Page.Size), 22, i + 1);
            // The writes may end with free between the watermarks and no round owed (the
            // watermarks' hysteresis: a round reached high and fewer than high - low writes
            // followed), or with the reclaimer still retrying rounds its refused starts stalled,
            // keeping free above low. Either way waiting for high could wait for nothing: signal
            // as an allocation does, which owes a round to high whatever free is (the allocator's
            // own signals are HostReclaimerServiceTests' subject).
            host.WakeReclaimer();
            // Bounded wait for the reclaimer to bring the pool back over its high watermark.
            // Generous (60 s): on a loaded 2-core machine the reclaimer thread may get a
            // small share of a core; the loop ends as soon as the pool is back.
            for (int wait = 0; wait < 6000 && host.FreeFrames < 64; wait++) await Task.Delay(10);
        }
        finally { await svc.StopAsync(CancellationToken.None); }
        Assert.True(host.FreeFrames >= 64, $"free {host.FreeFrames} after the reclaimer fell back to blocking starts (rounds {svc.Rounds}, stalls {host.Stats.BackgroundReclaimStalls})");
        Assert.True(host.Stats.InvalidateRetries > 0, "the reclaimer asked without blocking first");
        Assert.True(host.Stats.PagesWrittenToSwap > 0);
        lock (sub)
        {
            Assert.Equal(sub.Starts.Count, sub.Ends.Count);
            Assert.All(sub.Starts, r => Assert.True(r.MayBlock, "only blocking starts were accepted"));
        }
        for (ulong i = 0; i < pages; i++) AssertPage(mm, a.Add(i * Page.Size), 22, i + 1, "after reclaim through refused starts");
        AssertConsistent(host, "after background reclaim with a refusing subscriber");
    }
}
