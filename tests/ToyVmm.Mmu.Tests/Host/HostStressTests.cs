using ToyVmm.Mmu.Host;
using Xunit;
using Xunit.Abstractions;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Host;

/// <summary>
/// Faulting threads, the background reclaimer and PageOut/DontNeed/Unmap
/// storms at once, checked against a content oracle: every page reads what was
/// last written to it, or zero after DontNeed/Unmap. Per-page reader/writer
/// locks order the oracle's own operations (reads and PageOut share a page,
/// writes, DontNeed and Unmap own it); reclaim runs under no oracle lock.
/// </summary>
public class HostStressTests(ITestOutputHelper output)
{
    private sealed class Oracle
    {
        public readonly ReaderWriterLockSlim[] Locks;
        public readonly ulong[] Version;
        public long NextVersion;
        public Oracle(int pages)
        {
            Locks = Enumerable.Range(0, pages).Select(_ => new ReaderWriterLockSlim()).ToArray();
            Version = new ulong[pages];
        }
    }

    [Fact]
    public Task Storm_FaultsReclaimerPageOutDontNeedUnmap_ContentsMatchOracle() => RunStorm(seed: 20261125, rounds: 3, opsPerWorker: 1500);

    [Fact]
    [Trait("Category", "Long")]
    public Task Storm_Long_ContentsMatchOracle() => RunStorm(seed: 777, rounds: 10, opsPerWorker: 10000);

    private async Task RunStorm(int seed, int rounds, int opsPerWorker)
    {
        output.WriteLine($"seed {seed}, rounds {rounds}, ops/worker {opsPerWorker}");
        const int spaces = 2, pagesPerSpace = 768, workers = 3;
        using var host = NewHost(frames: 192, swapPages: 1 << 13, min: 8, low: 24, high: 40);
        var mms = Enumerable.Range(0, spaces).Select(_ => host.CreateAddressSpace()).ToArray();
        var bases = mms.Select(mm => mm.Map((ulong)pagesPerSpace * Page.Size, HostProtection.ReadWrite)).ToArray();
        var oracles = Enumerable.Range(0, spaces).Select(_ => new Oracle(pagesPerSpace)).ToArray();

        for (int round = 0; round < rounds; round++)
        {
            var svc = new HostReclaimerService(host);
            await svc.StartAsync(CancellationToken.None);
            var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
            var threads = new List<Thread>();
            for (int w = 0; w < workers; w++)
            {
                int wseed = seed + round * 100 + w;
                threads.Add(new Thread(() => Worker(wseed, opsPerWorker, mms, bases, oracles, failures)));
            }
            int sseed = seed + round * 100 + 99;
            threads.Add(new Thread(() => Storm(sseed, opsPerWorker / 10, mms, bases, oracles, failures)));
            foreach (var t in threads) t.Start();
            foreach (var t in threads) t.Join();
            await svc.StopAsync(CancellationToken.None);
            Assert.True(failures.IsEmpty, $"seed {seed} round {round}: " + string.Join("\n", failures.Take(10)));
            AssertConsistent(host, $"seed {seed} after storm round {round}");
        }
        // Every page, one last time.
        for (int s = 0; s < spaces; s++)
            for (int p = 0; p < pagesPerSpace; p++)
                AssertPage(mms[s], bases[s].Add((ulong)p * Page.Size), s, oracles[s].Version[p], $"seed {seed} final");
        AssertConsistent(host, $"seed {seed} final");
        output.WriteLine(host.Stats.ToString());
        Assert.True(host.Stats.PagesWrittenToSwap > 0 && host.Stats.SwapInsFromFile > 0, "the storm exercised swap");
    }

    private static void Worker(int seed, int ops, HostAddressSpace[] mms, Hva[] bases, Oracle[] oracles, System.Collections.Concurrent.ConcurrentQueue<string> failures)
    {
        var rng = new Random(seed);
        var buf = new byte[Page.Size];
        var want = new byte[Page.Size];
        try
        {
            for (int i = 0; i < ops && failures.IsEmpty; i++)
            {
                int s = rng.Next(mms.Length);
                var o = oracles[s];
                // A hot set makes pages age differently and racing faults on one page common.
                int p = rng.Next(4) == 0 ? rng.Next(32) : rng.Next(o.Version.Length);
                var page = bases[s].Add((ulong)p * Page.Size);
                int op = rng.Next(10);
                if (op < 5)
                {
                    o.Locks[p].EnterReadLock();
                    try
                    {
                        mms[s].Read(page, buf);
                        Fill(want, s, page.PageNumber, o.Version[p]);
                        if (!buf.AsSpan().SequenceEqual(want))
                            failures.Enqueue($"worker seed {seed} op {i}: space {s} page {p} does not hold version {o.Version[p]}");
                    }
                    finally { o.Locks[p].ExitReadLock(); }
                }
                else if (op < 6)
                {
                    o.Locks[p].EnterReadLock();
                    try { mms[s].PageOut(page, Page.Size); }
                    finally { o.Locks[p].ExitReadLock(); }
                }
                else
                {
                    o.Locks[p].EnterWriteLock();
                    try
                    {
                        if (op < 9)
                        {
                            ulong v = (ulong)Interlocked.Increment(ref o.NextVersion);
                            Fill(buf, s, page.PageNumber, v);
                            mms[s].Write(page, buf);
                            o.Version[p] = v;
                        }
                        else
                        {
                            mms[s].DontNeed(page, Page.Size);
                            o.Version[p] = 0;
                        }
                    }
                    finally { o.Locks[p].ExitWriteLock(); }
                }
            }
        }
        catch (Exception e) { failures.Enqueue($"worker seed {seed}: {e}"); }
    }

    private static void Storm(int seed, int ops, HostAddressSpace[] mms, Hva[] bases, Oracle[] oracles, System.Collections.Concurrent.ConcurrentQueue<string> failures)
    {
        var rng = new Random(seed);
        try
        {
            for (int i = 0; i < ops && failures.IsEmpty; i++)
            {
                int s = rng.Next(mms.Length);
                var o = oracles[s];
                int len = 1 + rng.Next(48);
                int p = rng.Next(o.Version.Length - len);
                var start = bases[s].Add((ulong)p * Page.Size);
                ulong bytes = (ulong)len * Page.Size;
                int op = rng.Next(3);
                // Lock the range in ascending order (the workers take one page at a time).
                for (int q = p; q < p + len; q++) { if (op == 0) o.Locks[q].EnterReadLock(); else o.Locks[q].EnterWriteLock(); }
                try
                {
                    switch (op)
                    {
                        case 0: mms[s].PageOut(start, bytes); break;
                        case 1: mms[s].DontNeed(start, bytes); break;
                        default:
                            mms[s].Unmap(start, bytes);
                            mms[s].MapFixed(start, bytes, HostProtection.ReadWrite);
                            break;
                    }
                    if (op != 0) for (int q = p; q < p + len; q++) o.Version[q] = 0;
                }
                finally
                {
                    for (int q = p; q < p + len; q++) { if (op == 0) o.Locks[q].ExitReadLock(); else o.Locks[q].ExitWriteLock(); }
                }
                Thread.Yield();
            }
        }
        catch (Exception e) { failures.Enqueue($"storm seed {seed}: {e}"); }
    }
}
