using BenchmarkDotNet.Attributes;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Host;

namespace ToyVmm.Bench.Host;

/// <summary>
/// Page-out and reclaim throughput, per page: forced PageOut of dirty resident
/// pages into the swap file (written and freed), PageOut of clean swap-cached
/// pages (dropped without a write), LRU reclaim of dirty pages to swap, and the
/// aging scan (rmap + host PTE + notifier accessed bits, second chance).
/// </summary>
[MemoryDiagnoser]
public class HostReclaimBenchmarks
{
    private const int Pages = 8192;
    private HostMemory _host = null!;
    private HostAddressSpace _mm = null!;
    private Hva _base;

    [GlobalSetup]
    public void Setup()
    {
        _host = HostBenchUtil.NewHost(frames: 2 * Pages, swapPages: 2 * Pages);
        _mm = _host.CreateAddressSpace();
        _base = _mm.Map(Pages * Page.Size, HostProtection.ReadWrite);
    }

    [GlobalCleanup]
    public void Cleanup() => _host.Dispose();

    [IterationSetup(Target = nameof(PageOutDirty))]
    public void BeforePageOutDirty() => HostBenchUtil.Dirty(_mm, _base, Pages);

    [Benchmark(OperationsPerInvoke = Pages)]
    public PageOutResult PageOutDirty() => _mm.PageOut(_base, Pages * Page.Size);

    [IterationSetup(Target = nameof(PageOutCleanSwapCached))]
    public void BeforePageOutClean()
    {
        HostBenchUtil.Dirty(_mm, _base, Pages);
        _mm.PageOut(_base, Pages * Page.Size);
        for (int i = 0; i < Pages; i++) _mm.Fault(_base.Add((ulong)i * Page.Size), write: false);   // back in, clean, swap copy current
    }

    [Benchmark(OperationsPerInvoke = Pages)]
    public PageOutResult PageOutCleanSwapCached() => _mm.PageOut(_base, Pages * Page.Size);

    [IterationSetup(Target = nameof(ReclaimDirtyToSwap))]
    public void BeforeReclaim() => HostBenchUtil.Dirty(_mm, _base, Pages);

    [Benchmark(OperationsPerInvoke = Pages)]
    public int ReclaimDirtyToSwap() => _host.ReclaimNow(Pages, ignoreAccessed: true);

    [IterationSetup(Target = nameof(AgingScan))]
    public void BeforeAging()
    {
        // Zero-filled pages enter the active list; AlwaysYoung keeps them there, so aging only rotates.
        _mm.DontNeed(_base, Pages * Page.Size);
        HostBenchUtil.Dirty(_mm, _base, Pages);
        _mm.Notifiers.Register(_young);
    }

    [IterationCleanup(Target = nameof(AgingScan))]
    public void AfterAging() => _mm.Notifiers.Unregister(_young);

    private readonly AlwaysYoung _young = new();

    [Benchmark(OperationsPerInvoke = Pages)]
    public int AgingScan()
    {
        int scanned = 0, got;
        while (scanned < Pages && (got = _host.Reclaim.AgeActive(64, ignoreYoung: false)) > 0) scanned += got;
        return scanned;
    }
}
