using BenchmarkDotNet.Attributes;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;

namespace ToyVmm.Bench.Secondary;

/// <summary>
/// Invalidate latency, start to end, of one mapped page while
/// <see cref="RunningVcpus"/> vCPUs run guest code, with the page in their TLBs
/// or not (<see cref="InTlb"/>); start returns once each of them is done with it
/// (mmu/LOCKING.md, TLB shootdown). Each invocation invalidates
/// <see cref="Pages"/> pages one by one. Per-operation percentiles: InvalidateLatencyProbe.
/// </summary>
[Config(typeof(FullJitConfig))]
public unsafe class InvalidateOnePageBenchmarks
{
    private const int Pages = 256;
    private const ulong Ram = 64UL << 20;
    private HostBackedMemory _memory = null!;
    private SpinGuest? _guest;
    private VcpuLink[] _fillers = null!;

    [Params(0, 1, 2)]
    public int RunningVcpus { get; set; }

    /// <summary>
    /// When true, the running vCPUs read every invalidated page in a loop, so the pages pass
    /// through their TLBs; a given page is often not held at the moment it is invalidated (it
    /// was zapped a moment before and not refaulted yet). InvalidateLatencyProbe measures the
    /// held case on its own, classing each invalidation.
    /// </summary>
    [Params(false, true)]
    public bool InTlb { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _memory = new HostBackedMemory(Ram, Math.Max(1, RunningVcpus), new GuestMemoryConfig(Ram + (Ram >> 3)));
        if (RunningVcpus > 0)
            _guest = new SpinGuest(_memory.Memory, RunningVcpus, InTlb ? PageGfn(0) << Page.Shift : 0, InTlb ? Pages : 0);
        // Fill through links with the running vCPUs' indices, so that every page counts
        // them as TLB holders and each zap waits for all of them (the worst case).
        _fillers = [.. Enumerable.Range(0, Math.Max(1, RunningVcpus)).Select(i => new VcpuLink(i))];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _guest?.Dispose();
        _memory.Dispose();
    }

    private static ulong PageGfn(int i) => (32UL << 20 >> Page.Shift) + (ulong)i;

    [IterationSetup]
    public void MapPages()
    {
        for (int i = 0; i < Pages; i++)
            foreach (var f in _fillers)
                _memory.Mmu.Translate(f, Gpa.FromPageNumber(PageGfn(i)), AccessKind.Write, out _);
    }

    [Benchmark(OperationsPerInvoke = Pages)]
    public void InvalidateOnePage()
    {
        var notifiers = _memory.Space.Notifiers;
        for (int i = 0; i < Pages; i++)
        {
            var hva = _memory.RamHva.Add(PageGfn(i) << Page.Shift);
            var r = new InvalidateRange(hva, hva.Add(Page.Size), InvalidateEvent.Clear, MayBlock: true);
            notifiers.InvalidateRangeStart(r);
            notifiers.InvalidateRangeEnd(r);
        }
    }
}

/// <summary>
/// Invalidation cost against range size with the same 64 mapped pages inside:
/// the cost follows the mapped pages, not the size (the walk follows occupancy bitmaps).
/// </summary>
[Config(typeof(FullJitConfig))]
public unsafe class InvalidateRangeSizeBenchmarks
{
    private const ulong Ram = 1UL << 30;
    private const int Mapped = 64;
    private HostBackedMemory _memory = null!;
    private VcpuLink _filler = null!;

    [Params(4UL << 10, 2UL << 20, 64UL << 20, 1UL << 30)]
    public ulong RangeBytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _memory = new HostBackedMemory(Ram, 1, new GuestMemoryConfig(64UL << 20));
        _filler = new VcpuLink(99);
    }

    [GlobalCleanup]
    public void Cleanup() => _memory.Dispose();

    [IterationSetup]
    public void MapPages()
    {
        // Mapped pages spread evenly over the range (all in the first page when it is one page).
        ulong stride = Math.Max(Page.Size, RangeBytes / Mapped);
        for (int i = 0; i < Mapped; i++)
        {
            ulong off = Math.Min((ulong)i * stride, RangeBytes - Page.Size);
            _memory.Mmu.Translate(_filler, new Gpa(off), AccessKind.Write, out _);
        }
    }

    [Benchmark]
    public void InvalidateRange()
    {
        var r = new InvalidateRange(_memory.RamHva, _memory.RamHva.Add(RangeBytes), InvalidateEvent.Clear, MayBlock: true);
        _memory.Space.Notifiers.InvalidateRangeStart(r);
        _memory.Space.Notifiers.InvalidateRangeEnd(r);
    }
}
