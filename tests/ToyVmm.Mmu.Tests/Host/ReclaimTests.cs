using ToyVmm.Mmu.Host;
using Xunit;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Host;

public class ReclaimTests
{
    [Fact]
    public void FillEvictRefault_TensOfThousandsOfPageOuts_ContentsSurvive()
    {
        using var host = NewHost(frames: 256, swapPages: 1 << 15);
        var mm = host.CreateAddressSpace();
        const ulong pages = 6144;
        var a = mm.Map(pages * Page.Size, HostProtection.ReadWrite);
        var versions = new ulong[pages];
        for (ulong round = 1; round <= 3; round++)
        {
            for (ulong i = 0; i < pages; i++)
            {
                if ((i + round) % 3 == 0) continue;   // leave some pages at their older version
                versions[i] = round;
                WritePage(mm, a.Add(i * Page.Size), 11, round);
            }
            for (ulong i = 0; i < pages; i += 7) AssertPage(mm, a.Add(i * Page.Size), 11, versions[i], $"round {round}");
        }
        for (ulong i = 0; i < pages; i++) AssertPage(mm, a.Add(i * Page.Size), 11, versions[i], "final");
        Assert.True(host.Stats.PagesWrittenToSwap + host.Stats.CleanPagesDropped >= 20_000,
            $"page-outs {host.Stats.PagesWrittenToSwap} + {host.Stats.CleanPagesDropped}");
        AssertConsistent(host, "after fill/evict/refault");
    }

    [Fact]
    public void Aging_SecondaryMmuSaysYoung_PageGetsSecondChance()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var sub = new RecordingSubscriber { ReportYoung = true };
        mm.Notifiers.Register(sub);
        var a = mm.Map(64 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 64; i++) WritePage(mm, a.Add(i * Page.Size), 1, 1);
        int freed = 0;
        for (int pass = 0; pass < 8; pass++) freed += host.Reclaim.ShrinkOnce(priority: 0, mayBlock: true);
        Assert.Equal(0, freed);
        Assert.True(sub.ClearYoungCalls + sub.ClearFlushYoungCalls > 0);
        sub.ReportYoung = false;
        for (int pass = 0; pass < 8; pass++) freed += host.Reclaim.ShrinkOnce(priority: 0, mayBlock: true);
        Assert.True(freed > 0, "pages nobody used are reclaimed once the secondary MMU stops reporting them young");
        for (ulong i = 0; i < 64; i++) AssertPage(mm, a.Add(i * Page.Size), 1, 1, "after aging");
    }

    [Fact]
    public void Reclaim_NonBlockingRefused_BacksOffAndRetries()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var sub = new RecordingSubscriber { RefuseNonBlocking = 1000 };
        mm.Notifiers.Register(sub);
        var a = mm.Map(32 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 32; i++) WritePage(mm, a.Add(i * Page.Size), 2, 1);
        Assert.Equal(0, host.Reclaim.ShrinkOnce(priority: 2, mayBlock: false));
        Assert.True(host.Stats.InvalidateRetries > 0);
        Assert.Equal(32, mm.ResidentPages);
        Assert.True(host.Reclaim.ShrinkOnce(priority: 2, mayBlock: true) > 0);
        Assert.Equal(sub.Starts.Count, sub.Ends.Count);
        AssertConsistent(host, "after refused invalidations");
    }

    [Fact]
    public async Task BackgroundReclaimer_BelowLow_ReclaimsToHigh()
    {
        using var host = NewHost(frames: 256, min: 8, low: 32, high: 64);
        var svc = new HostReclaimerService(host);
        await svc.StartAsync(CancellationToken.None);
        try
        {
            var mm = host.CreateAddressSpace();
            var a = mm.Map(480 * Page.Size, HostProtection.ReadWrite);
            // Write until an allocation leaves free at or below low (it signals after taking its
            // frame): a round that reached high earlier and fewer than high - low writes after it
            // would leave free between the watermarks with nothing owed (the hysteresis). When
            // the reclaimer keeps free above low all the way (it can, on a free core), signal as
            // such an allocation does: a signal owes a round to high whatever free is.
            ulong written = 0;
            while ((host.FreeFrames > 32 || written < 240) && written < 480) WritePage(mm, a.Add(written++ * Page.Size), 3, 1);
            if (host.FreeFrames > 32) host.WakeReclaimer();
            // Bounded (60 s) for a loaded machine; ends as soon as the pool is back.
            for (int wait = 0; wait < 6000 && host.FreeFrames < 64; wait++) await Task.Delay(10);
            Assert.True(host.FreeFrames >= 64, $"free {host.FreeFrames}, rounds {svc.Rounds}");
            Assert.True(host.Stats.BackgroundReclaimWakeups > 0);
        }
        finally { await svc.StopAsync(CancellationToken.None); }
        AssertConsistent(host, "after background reclaim");
    }
}

public class HostMemoryHostingTests
{
    [Fact]
    public async Task AddToyVmmHostMemory_GenericHost_StartsAndStopsReclaimer()
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder();
        builder.Services.AddToyVmmHostMemory(new HostMemoryOptions { HostMemoryBytes = 1 << 20, SwapBytes = 4 << 20 });
        string swapPath;
        using (var app = builder.Build())
        {
            await app.StartAsync();
            var mem = (HostMemory)app.Services.GetService(typeof(HostMemory))!;
            swapPath = mem.Swap.FilePath;
            var mm = mem.CreateAddressSpace();
            var a = mm.Map(512 * Page.Size, HostProtection.ReadWrite);
            for (ulong i = 0; i < 512; i++) mm.WriteUInt64(a.Add(i * Page.Size), i);
            for (ulong i = 0; i < 512; i++) Assert.Equal(i, mm.ReadUInt64(a.Add(i * Page.Size)));
            await app.StopAsync();
        }
        Assert.False(File.Exists(swapPath));
    }
}
