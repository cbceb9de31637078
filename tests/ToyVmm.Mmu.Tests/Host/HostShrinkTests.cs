using ToyVmm.Mmu.Host;
using Xunit;
using Xunit.Abstractions;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Host;

/// <summary>
/// Shrinking the frame pool while it is in use: free frames leave at once, the
/// rest as reclaim frees them, the watermarks scale down, the counts stay true
/// and every page keeps its contents.
/// </summary>
public class HostShrinkTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public void Shrink_AllFree_RetiresAtOnceAndScalesWatermarks()
    {
        using var host = NewHost(frames: 1024);
        var before = host.Watermarks;
        var r = host.Shrink(256UL << Page.Shift);
        Assert.Equal(new HostShrinkResult(256, 256, 256, 0, 768), r);
        Assert.False(r.Clamped);
        Assert.Equal(768, host.FrameCount);
        Assert.Equal(768, host.FreeFrames);
        Assert.Equal(256, host.RetiredFrames);
        Assert.Equal(0, host.ShrinkDebt);
        var after = host.Watermarks;
        Assert.True(after.High < before.High && after.Min <= after.Low && after.Low <= after.High,
            $"watermarks {before} scale down to {after}");
        AssertConsistent(host, "after shrinking a free pool");
    }

    [Fact]
    public void Shrink_BelowTheMinimum_ClampedToSixtyFourFramesPlusHigh()
    {
        using var host = NewHost(frames: 512);
        var r = host.Shrink(1UL << 30);
        Assert.True(r.Clamped);
        Assert.True(r.GrantedFrames > 0);
        Assert.Equal(512 - r.GrantedFrames, host.FrameCount);
        Assert.True(host.FrameCount >= 64 + host.Watermarks.High, $"{host.FrameCount} frames, high {host.Watermarks.High}");
        // A second shrink finds nothing left to take.
        var again = host.Shrink(Page.Size);
        Assert.Equal(0, again.GrantedFrames);
        Assert.True(again.Clamped);
        Assert.Equal(512 - r.GrantedFrames, host.FrameCount);
        AssertConsistent(host, "after a clamped shrink");
    }

    [Fact]
    public void Shrink_SmallestHost_GrantsNothing()
    {
        using var host = NewHost(frames: 64);
        var r = host.Shrink(16 * Page.Size);
        Assert.Equal(0, r.GrantedFrames);
        Assert.Equal(64, host.FrameCount);
    }

    [Fact]
    public void Shrink_FramesInUse_ReclaimPaysTheDebtAndContentsSurvive()
    {
        using var host = NewHost(frames: 256);
        var mm = host.CreateAddressSpace();
        const ulong pages = 400, written = 200;
        var a = mm.Map(pages * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < written; i++) WritePage(mm, a.Add(i * Page.Size), 5, 1);
        int free = host.FreeFrames;
        var r = host.Shrink(160UL << Page.Shift);
        output.WriteLine($"{free} free before; {r}");
        Assert.Equal(160, r.GrantedFrames);
        Assert.Equal(free, r.RetiredNow);
        Assert.Equal(160 - free, r.Debt);
        Assert.Equal(0, host.FreeFrames);
        Assert.Equal(256 - free, host.FrameCount);

        // New pages allocate, which reclaims (the free list is empty), and the frames
        // reclaim frees pay the debt before any is listed free again.
        for (ulong i = written; i < pages; i++) WritePage(mm, a.Add(i * Page.Size), 5, 1);
        Assert.Equal(0, host.ShrinkDebt);
        Assert.Equal(160, host.RetiredFrames);
        Assert.Equal(96, host.FrameCount);
        Assert.True(host.Stats.PagesWrittenToSwap > 0);
        Assert.True(mm.ResidentPages <= 96);
        for (ulong i = 0; i < pages; i++) AssertPage(mm, a.Add(i * Page.Size), 5, 1, "after reclaim paid the debt");
        AssertConsistent(host, "after reclaim paid the debt");
    }

    [Fact]
    public async Task Shrink_BackgroundReclaimer_PaysTheDebtWithNoAllocation()
    {
        using var host = NewHost(frames: 512);
        var mm = host.CreateAddressSpace();
        const ulong pages = 480;
        var a = mm.Map(pages * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < pages; i++) WritePage(mm, a.Add(i * Page.Size), 6, 1);
        var svc = new HostReclaimerService(host);
        await svc.StartAsync(CancellationToken.None);
        try
        {
            var r = host.Shrink(256UL << Page.Shift);
            Assert.True(r.Debt > 0, r.ToString());
            // The shrink woke the reclaimer; nothing else runs.
            Assert.True(SpinWait.SpinUntil(() => host.ShrinkDebt == 0 && host.FreeFrames >= host.Watermarks.High, Patience),
                $"debt {host.ShrinkDebt}, free {host.FreeFrames}, high {host.Watermarks.High}");
        }
        finally { await svc.StopAsync(CancellationToken.None); }
        Assert.Equal(256, host.RetiredFrames);
        Assert.Equal(256, host.FrameCount);
        for (ulong i = 0; i < pages; i++) AssertPage(mm, a.Add(i * Page.Size), 6, 1, "after background reclaim");
        AssertConsistent(host, "after background reclaim");
    }

    [Fact]
    public async Task Shrink_WhileThreadsFaultAndReclaimerRuns_ContentsAndCountsHold()
    {
        const int seed = 4242;
        output.WriteLine($"seed {seed}");
        using var host = NewHost(frames: 1024, swapPages: 1 << 13);
        var mm = host.CreateAddressSpace();
        const int pages = 1536, workers = 2;
        var a = mm.Map((ulong)pages * Page.Size, HostProtection.ReadWrite);
        var svc = new HostReclaimerService(host);
        await svc.StartAsync(CancellationToken.None);
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var versions = new ulong[pages];
        using var stop = new CancellationTokenSource();
        var threads = Enumerable.Range(0, workers).Select(w => new Thread(() =>
        {
            // Each worker owns the pages p with p % workers == w: its oracle needs no lock.
            var rng = new Random(seed + w);
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    int p = rng.Next(pages / workers) * workers + w;
                    var at = a.Add((ulong)p * Page.Size);
                    if (rng.Next(3) == 0) AssertPage(mm, at, 7, versions[p], $"worker {w}");
                    else WritePage(mm, at, 7, ++versions[p]);
                }
            }
            catch (Exception e) { failures.Enqueue(e.Message); }
        })).ToList();
        foreach (var t in threads) t.Start();
        try
        {
            // Shrink in steps while the workers fault and the reclaimer runs, down to the clamp.
            int granted = 0;
            for (int step = 0; step < 12 && failures.IsEmpty; step++)
            {
                var r = host.Shrink(96UL << Page.Shift);
                granted += r.GrantedFrames;
                Assert.True(SpinWait.SpinUntil(() => host.ShrinkDebt == 0 || !failures.IsEmpty, Patience), $"step {step}: debt {host.ShrinkDebt}");
            }
            Assert.True(granted > 0);
            Assert.Equal(1024 - granted, host.FrameCount);
        }
        finally
        {
            stop.Cancel();
            foreach (var t in threads) t.Join();
            await svc.StopAsync(CancellationToken.None);
        }
        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(5)));
        Assert.True(host.FrameCount >= 64 + host.Watermarks.High);
        for (int p = 0; p < pages; p++) AssertPage(mm, a.Add((ulong)p * Page.Size), 7, versions[p], "final");
        AssertConsistent(host, "after shrinking under load");
    }
}
