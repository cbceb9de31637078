using BenchmarkDotNet.Attributes;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Bench.Secondary;

/// <summary>
/// Secondary fault latency per page, from the missing EPT entry to the
/// installed one (Translate on a miss: slot lookup, get_user_pages, locked
/// re-check, install): with the host page present, zero-filled, or swapped
/// in from the swap file. Each invocation faults <see cref="Pages"/> pages.
/// <see cref="Measuring"/>: nothing recorded (<c>Off</c>), every fault, swap read and
/// page-out recorded into a <see cref="MeasurementHub"/> as a run with the report on
/// does (<c>Report</c>), and also on its timeline (<c>Trace</c>).
/// </summary>
[Config(typeof(FullJitConfig))]
public unsafe class SecondaryFaultBenchmarks
{
    private const int Pages = 2048;
    private HostMemory _host = null!;
    private HostAddressSpace _mm = null!;
    private EptMmu _mmu = null!;
    private VcpuLink _vcpu = null!;
    private Hva _base;
    private MeasurementHub? _hub;

    public enum Measurement { Off, Report, Trace }

    [Params(Measurement.Off, Measurement.Report, Measurement.Trace)]
    public Measurement Measuring { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _host = new HostMemory(new HostMemoryOptions { HostMemoryBytes = 4UL * Pages << Page.Shift, SwapBytes = 4UL * Pages << Page.Shift });
        _mm = _host.CreateAddressSpace();
        _base = _mm.Map((ulong)Pages << Page.Shift, HostProtection.ReadWrite);
        _mmu = new EptMmu(new SecondaryHostBinding(_mm), (ulong)Pages << Page.Shift, _base);
        _vcpu = new VcpuLink(0);
        _mmu.AttachVcpu(_vcpu);
        if (Measuring != Measurement.Off)
        {
            _hub = new MeasurementHub(1, Measuring == Measurement.Trace ? 1_000_000 : 0);
            _host.Events = _hub;
            _mmu.Events = _hub;
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _mmu.Dispose();
        _mm.Dispose();
        _host.Dispose();
        _hub?.Dispose();
    }

    /// <summary>Zap every secondary entry and leave the host pages as they are.</summary>
    private void ZapSecondary()
    {
        var r = new Mmu.Notifiers.InvalidateRange(_base, _base.Add((ulong)Pages << Page.Shift), Mmu.Notifiers.InvalidateEvent.Clear, true);
        _mm.Notifiers.InvalidateRangeStart(r);
        _mm.Notifiers.InvalidateRangeEnd(r);
    }

    [IterationSetup(Target = nameof(HostPagePresent))]
    public void BeforePresent()
    {
        for (int i = 0; i < Pages; i++) _mm.Fault(_base.Add((ulong)i << Page.Shift), write: true);
        ZapSecondary();
    }

    [Benchmark(OperationsPerInvoke = Pages)]
    public void HostPagePresent() => FaultAll();

    [IterationSetup(Target = nameof(ZeroFill))]
    public void BeforeZeroFill()
    {
        _mm.DontNeed(_base, (ulong)Pages << Page.Shift);
        ZapSecondary();
    }

    [Benchmark(OperationsPerInvoke = Pages)]
    public void ZeroFill() => FaultAll();

    [IterationSetup(Target = nameof(SwapIn))]
    public void BeforeSwapIn()
    {
        for (int i = 0; i < Pages; i++) _mm.WriteUInt64(_base.Add((ulong)i << Page.Shift), (ulong)i + 1);
        _mm.PageOut(_base, (ulong)Pages << Page.Shift);
        ZapSecondary();
    }

    [Benchmark(OperationsPerInvoke = Pages)]
    public void SwapIn() => FaultAll();

    private void FaultAll()
    {
        for (int i = 0; i < Pages; i++)
            if (_mmu.Translate(_vcpu, Gpa.FromPageNumber((ulong)i), AccessKind.Read, out _) != TranslateStatus.Ok)
                throw new InvalidOperationException($"fault on page {i} failed");
    }
}
