using Microsoft.Extensions.Logging;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Report;
using ToyVmm.Vm;

namespace ToyVmm.Cli;

/// <summary>
/// What a run hands its user at the end (README "Reports, traces and plots"): the
/// JSON report (<c>--report</c>), the trace (<c>--trace</c>), the plots (<c>--plot</c>)
/// and the end-of-run table on standard error (<c>--stats</c>). Called once the
/// vCPUs and the background threads have stopped, so the snapshot is exact; also
/// after an interrupted run, so a cancelled experiment still leaves its report.
/// </summary>
public sealed partial class RunOutputs
{
    private readonly RunOptions _options;
    private readonly ILogger _logger;

    public RunOutputs(RunOptions options, ILogger logger)
    {
        _options = options;
        _logger = logger;
    }

    /// <summary>True when the run must keep a snapshot for something at its end.</summary>
    public bool Wanted => _options.Stats || _options.ReportPath is not null || _options.TracePath is not null || _options.PlotDirectory is not null;

    /// <summary>
    /// Writes every output the options ask for. A write that fails is logged in one
    /// line and does not change the exit status of the guest's run, except that it
    /// becomes <see cref="ExitCodes.VmError"/> when the run itself went well, so a
    /// script never takes a missing report for a good one.
    /// </summary>
    public int Write(MeasurementSnapshot snapshot, RunFacts facts)
    {
        var o = _options;
        var report = RunReport.Build(snapshot, facts);
        int status = facts.ExitStatus;
        if (o.ReportPath is { } reportPath)
            status = Try(status, "report", reportPath, () => ReportWriter.Write(report, reportPath));
        if (o.TracePath is { } tracePath)
            status = Try(status, "trace", tracePath, () =>
            {
                var trace = snapshot.Trace ?? throw new IOException("no timeline was recorded");
                TraceFileWriter.Write(trace, tracePath, facts.Settings);
            });
        if (o.PlotDirectory is { } plotDir)
            status = Try(status, "plots", plotDir, () =>
                Plots.Write(snapshot, plotDir, Path.GetFileName(facts.GuestPath), EndOfRunTable.SettingsLine(report.Settings)));
        if (o.Stats)
            foreach (var line in EndOfRunTable.Render(report).TrimEnd('\n').Split('\n'))
                Log.Stat(_logger, line);
        return status;
    }

    private int Try(int status, string what, string path, Action write)
    {
        try
        {
            write();
            return status;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Log.OutputFailed(_logger, what, path, ex.Message);
            return status == 0 ? ExitCodes.VmError : status;
        }
    }

    /// <summary>Every option as the run used it, defaults included, in the order of the option table.</summary>
    public static IReadOnlyList<KeyValuePair<string, string>> Settings(RunOptions o) =>
    [
        new("guest", string.Join(" ", o.AllGuests)),
        new("memory", SizeParser.Format(o.MemoryBytes)),
        new("vcpus", o.Vcpus.ToString()),
        new("hostMemory", o.FlatMemory ? "none" : SizeParser.Format(HostMemoryOf(o))),
        new("pageout", o.PageOut.Count == 0 ? "none" : string.Join("; ", o.PageOut.Select(PageOutScheduleParser.Format))),
        new("check", o.Check ? "on" : "off"),
        new("pinVcpus", o.PinVcpus ? "on" : "off"),
        new("notifierProtocol", Mmu.Notifiers.NotifierProtocols.NameOf(o.Protocol)),
        new("mmu", o.FlatMemory ? "none" : o.Mmu == Vm.SecondaryMmuKind.Shadow ? "shadow" : "ept"),
        new("swapFile", o.SwapFile ?? "temporary"),
        new("flatMemory", o.FlatMemory ? "on" : "off"),
        new("maxInstructions", o.MaxInstructions > 0 ? o.MaxInstructions.ToString() : "none"),
        new("cpu", o.Cpu == CpuMode.Tiered ? "tiered" : "interpreter"),
        new("tierThreshold", o.Cpu == CpuMode.Tiered ? o.TierThreshold.ToString() : "off"),
        new("seed", o.Seed.ToString()),
        new("traceLimit", o.TracePath is null ? "off" : o.TraceLimit.ToString()),
    ];

    /// <summary>The host frame pool a run uses: <c>--host-memory</c>, or guest RAM plus 1/8 for each VM.</summary>
    public static ulong HostMemoryOf(RunOptions o) =>
        o.HostMemoryBytes != 0 ? o.HostMemoryBytes : (o.MemoryBytes + (o.MemoryBytes >> 3)) * (ulong)o.AllGuests.Count;

    /// <summary>The host's counters at the end of a run on host-backed memory.</summary>
    public static HostCounters HostCountersOf(HostBackedMemory backing, MeasurementSnapshot snapshot)
    {
        var s = backing.Host.Stats;
        return new HostCounters
        {
            FramesTotal = backing.Host.FrameCount,
            FramesFree = backing.Host.FreeFrames,
            PageOuts = Interlocked.Read(ref s.PagesWrittenToSwap),
            SwapIns = Interlocked.Read(ref s.SwapInsFromFile),
            SwapCacheHits = Interlocked.Read(ref s.SwapCacheHits),
            ZeroFills = Interlocked.Read(ref s.ZeroFillFaults),
            WriteErrors = Interlocked.Read(ref s.SwapWriteErrors),
            ReadErrors = Interlocked.Read(ref s.SwapReadErrors),
            ChecksumErrors = Interlocked.Read(ref s.SwapChecksumErrors),
            Other =
            [
                new("cleanPagesDropped", Interlocked.Read(ref s.CleanPagesDropped)),
                new("zeroPagesDiscarded", Interlocked.Read(ref s.ZeroPagesDiscarded)),
                new("reclaimScanned", Interlocked.Read(ref s.ReclaimScanned)),
                new("reclaimFreed", Interlocked.Read(ref s.ReclaimFreed)),
                new("reclaimRuns", Interlocked.Read(ref s.ReclaimRuns)),
                new("reclaimBusy", Interlocked.Read(ref s.ReclaimBusy)),
                new("reclaimScansFailed", Interlocked.Read(ref s.ReclaimScansFailed)),
                new("pinnedFrames", backing.PinnedFrames),
                new("directReclaims", Interlocked.Read(ref s.DirectReclaims)),
                new("swapFull", Interlocked.Read(ref s.SwapFull)),
                new("swapOutOfSpace", Interlocked.Read(ref s.SwapOutOfSpace)),
                new("outOfMemory", Interlocked.Read(ref s.OutOfMemory)),
                new("pagesForcedOut", backing.PressurePages),
                .. Enum.GetValues<PageOutPick>()
                    .Where(pick => backing.PageOutDriver.PagesPagedOutBy(pick) > 0)
                    .Select(pick => new KeyValuePair<string, long>(
                        $"pagesForcedOut{pick}", backing.PageOutDriver.PagesPagedOutBy(pick))),
                .. backing.PageOutDriver.ShrinkFrames is { Requested: > 0 } shrink
                    ? new KeyValuePair<string, long>[] { new("shrinkFramesRequested", shrink.Requested), new("shrinkFramesRetired", shrink.Granted) }
                    : [],
            ],
        };
    }
}
