using ToyVmm.Mmu.Host;
using Xunit;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Host;

/// <summary>
/// When the background reclaimer runs a round and what it does when a round stops short
/// (mmu/LOCKING.md, "The background reclaimer"): it blocks until signalled with no timeout,
/// a signal owes a round to the high watermark, a round that stalls below high is retried
/// after a bounded back-off with no allocation to wake it, and one that finds only dirty
/// pages with no swap slot waits for the next signal instead of retrying.
/// </summary>
public class HostReclaimerServiceTests
{
    /// <summary>Bound on waits for the reclaimer thread (a loaded 2-core machine may give it little of a core); never a figure the tests assert.</summary>
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    /// <summary>A window ten times the poll interval the reclaimer once woke itself at.</summary>
    private const int QuietWindowMs = 500;

    [Fact]
    public async Task Run_NothingOwed_BlocksWithoutWakingItselfAndAnswersASignal()
    {
        using var host = NewHost(frames: 256, min: 8, low: 32, high: 64);
        var svc = new HostReclaimerService(host);
        await svc.StartAsync(CancellationToken.None);
        try
        {
            Assert.True(SpinWait.SpinUntil(() => svc.LastRoundEnd is not null, Patience), "the reclaimer's first look");
            // Where the kernel says what the thread is doing (Linux): once it sleeps, it must
            // never be seen runnable again. A wait that spins and yields before it blocks is
            // runnable through its spin, and on a loaded machine for most of the time.
            int tid = svc.OsThreadId;
            string stat = $"/proc/self/task/{tid}/stat";
            bool kernelView = tid > 0 && File.Exists(stat);
            if (kernelView) Assert.True(SpinWait.SpinUntil(() => KernelState(stat) == 'S', Patience), "the reclaimer thread goes to sleep");
            long looks = svc.Looks;
            var seen = new HashSet<char>();
            for (var window = System.Diagnostics.Stopwatch.StartNew(); window.ElapsedMilliseconds < QuietWindowMs;)
            {
                if (kernelView) seen.Add(KernelState(stat));
                Thread.Sleep(1);
            }
            Assert.Equal(looks, svc.Looks);   // nothing signalled, nothing owed: no look
            Assert.DoesNotContain('R', seen);
            Assert.Equal(0, svc.Rounds);
            host.WakeReclaimer();
            Assert.True(SpinWait.SpinUntil(() => svc.Looks > looks, Patience), "a signal is answered");
            Assert.Equal(0, svc.Rounds);      // free is above high: the look runs no pass
        }
        finally { await svc.StopAsync(CancellationToken.None); }
    }

    /// <summary>The state letter of /proc/.../stat: after the ')' that closes the thread's name.</summary>
    private static char KernelState(string statPath)
    {
        string line = File.ReadAllText(statPath);
        return line[line.LastIndexOf(')') + 2];
    }

    [Fact]
    public async Task Start_SignalOwedWithFreeBetweenLowAndHigh_ReclaimsToHigh()
    {
        using var host = NewHost(frames: 256, min: 8, low: 32, high: 64);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(232 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 232; i++) WritePage(mm, a.Add(i * Page.Size), 31, 1);   // free 24: the last allocations signalled
        Assert.True(host.ReclaimerWake.IsPending);
        mm.DontNeed(a, 16 * Page.Size);   // free 40: above low, below high, before the reclaimer got to run
        Assert.InRange(host.FreeFrames, 33, 63);
        var svc = new HostReclaimerService(host);
        await svc.StartAsync(CancellationToken.None);
        try
        {
            Assert.True(SpinWait.SpinUntil(() => host.FreeFrames >= 64, Patience), $"free {host.FreeFrames}, rounds {svc.Rounds}");
        }
        finally { await svc.StopAsync(CancellationToken.None); }
        for (ulong i = 16; i < 232; i++) AssertPage(mm, a.Add(i * Page.Size), 31, 1, "after the owed round");
        AssertConsistent(host, "after the owed round");
    }

    [Fact]
    public async Task Round_StallsBetweenLowAndHigh_RetriedToHighWithNoAllocation()
    {
        using var host = NewHost(frames: 256, min: 8, low: 32, high: 64);
        var mm = host.CreateAddressSpace();
        const int pages = 240, pinned = 220;
        var a = mm.Map(pages * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < pages; i++) WritePage(mm, a.Add(i * Page.Size), 32, 1);   // free 16
        // Held references (a secondary MMU's pins, a get_user_pages in flight): reclaim finds
        // those frames busy, so a round can free at most the other 20 and stops near 36.
        var held = new Hfn[pinned];
        Assert.Equal(HostFaultStatus.Ok, mm.GetUserPages(a.Add((ulong)(pages - pinned) * Page.Size), pinned, write: false, held));
        var svc = new HostReclaimerService(host);
        await svc.StartAsync(CancellationToken.None);
        try
        {
            Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref host.Stats.BackgroundReclaimStalls) > 0, Patience),
                $"the round stalls: free {host.FreeFrames}, rounds {svc.Rounds}");
            Assert.InRange(host.FreeFrames, 33, 63);
            Assert.Equal(HostReclaimerService.RoundEnd.Stalled, svc.LastRoundEnd);
            // The references go; nothing allocates after, so no signal comes: only the retry finishes the round.
            foreach (var f in held) host.ReleasePage(f, PageRelease.Unused);
            Assert.True(SpinWait.SpinUntil(() => host.FreeFrames >= 64, Patience),
                $"free {host.FreeFrames} after the references went, rounds {svc.Rounds}, stalls {host.Stats.BackgroundReclaimStalls}");
        }
        finally { await svc.StopAsync(CancellationToken.None); }
        for (ulong i = 0; i < pages; i++) AssertPage(mm, a.Add(i * Page.Size), 32, 1, "after the retried round");
        AssertConsistent(host, "after the retried round");
    }

    [Fact]
    public async Task Round_EveryPageDirtyAndNoSwap_WaitsForASignalInsteadOfRetrying()
    {
        using var host = NewHost(frames: 256, swapPages: 0, min: 8, low: 32, high: 64);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(240 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 240; i++) WritePage(mm, a.Add(i * Page.Size), 33, 1);   // free 16, every page dirty
        var svc = new HostReclaimerService(host);
        await svc.StartAsync(CancellationToken.None);
        try
        {
            Assert.True(SpinWait.SpinUntil(() => svc.LastRoundEnd is not null, Patience), "the first round ends");
            Assert.Equal(HostReclaimerService.RoundEnd.NothingToDo, svc.LastRoundEnd);
            long looks = svc.Looks, rounds = svc.Rounds;
            Thread.Sleep(QuietWindowMs);
            Assert.Equal(looks, svc.Looks);     // no retry: nothing can change until a signal
            Assert.Equal(rounds, svc.Rounds);
            Assert.Equal(0, host.Stats.BackgroundReclaimStalls);
            host.WakeReclaimer();
            Assert.True(SpinWait.SpinUntil(() => svc.Looks > looks, Patience), "a signal is answered");
        }
        finally { await svc.StopAsync(CancellationToken.None); }
        Assert.Equal(16, host.FreeFrames);
        for (ulong i = 0; i < 240; i++) AssertPage(mm, a.Add(i * Page.Size), 33, 1, "after rounds with no swap");
        AssertConsistent(host, "after rounds with no swap");
    }
}
