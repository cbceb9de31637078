using BenchmarkDotNet.Attributes;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Host;

namespace ToyVmm.Bench.Host;

/// <summary>
/// Host fault latency per page: zero-fill, swap-cache hit, swap-in from the
/// swap file (in the page cache), and the get_user_pages fast path on a
/// resident page (what a secondary fault pays on the host side).
/// Each invocation faults <see cref="Pages"/> pages; results are per page.
/// </summary>
[MemoryDiagnoser]
public class HostFaultBenchmarks
{
    private const int Pages = 4096;
    private HostMemory _host = null!;
    private HostAddressSpace _mm = null!;
    private Hva _base;
    private readonly FailingWrites _inject = new();

    [GlobalSetup]
    public void Setup()
    {
        _host = HostBenchUtil.NewHost(frames: 4 * Pages, swapPages: 4 * Pages);
        _host.Swap.FaultInjector = _inject;
        _mm = _host.CreateAddressSpace();
        _base = _mm.Map(Pages * Page.Size, HostProtection.ReadWrite);
    }

    [GlobalCleanup]
    public void Cleanup() => _host.Dispose();

    [IterationSetup(Target = nameof(ZeroFill))]
    public void BeforeZeroFill() => _mm.DontNeed(_base, Pages * Page.Size);

    [Benchmark(OperationsPerInvoke = Pages)]
    public void ZeroFill()
    {
        for (int i = 0; i < Pages; i++) _mm.Fault(_base.Add((ulong)i * Page.Size), write: true);
    }

    [IterationSetup(Target = nameof(SwapCacheHit))]
    public void BeforeSwapCacheHit()
    {
        // Dirty resident pages whose write-out fails stay in the swap cache, unmapped.
        HostBenchUtil.Dirty(_mm, _base, Pages);
        _inject.Fail = true;
        _mm.PageOut(_base, Pages * Page.Size);
        _inject.Fail = false;
    }

    [Benchmark(OperationsPerInvoke = Pages)]
    public void SwapCacheHit()
    {
        for (int i = 0; i < Pages; i++) _mm.Fault(_base.Add((ulong)i * Page.Size), write: false);
    }

    [IterationSetup(Target = nameof(SwapInFromFile))]
    public void BeforeSwapIn()
    {
        HostBenchUtil.Dirty(_mm, _base, Pages);
        _mm.PageOut(_base, Pages * Page.Size);
    }

    [Benchmark(OperationsPerInvoke = Pages)]
    public void SwapInFromFile()
    {
        for (int i = 0; i < Pages; i++) _mm.Fault(_base.Add((ulong)i * Page.Size), write: false);
    }

    [IterationSetup(Target = nameof(GetUserPageResident))]
    public void BeforeResident() => HostBenchUtil.Dirty(_mm, _base, Pages);

    [Benchmark(OperationsPerInvoke = Pages)]
    public void GetUserPageResident()
    {
        for (int i = 0; i < Pages; i++)
        {
            _mm.GetUserPage(_base.Add((ulong)i * Page.Size), write: true, out var f);
            _host.ReleasePage(f, PageRelease.Dirty);
        }
    }
}
