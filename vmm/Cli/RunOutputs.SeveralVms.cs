using ToyVmm.Mmu.Metrics;
using ToyVmm.Report;
using ToyVmm.Vm;

namespace ToyVmm.Cli;

// The outputs of a run of several VMs on one host (MultiVmRunner): the report's
// top level is the whole host (every VM's figures and the host's own merged, the
// host's counters), with each VM's own report under `vms`; the trace has one
// process per VM and one for the host; the table prints the whole, then each VM.
public sealed partial class RunOutputs
{
    public int WriteSeveral(SharedHost shared, IReadOnlyList<HostBackedMemory> memories, IReadOnlyList<VmRunFigures> vms,
        int exitStatus, string outcome, double wallSeconds)
    {
        var o = _options;
        var hostSnapshot = shared.Measurements.Snapshot();
        var merged = SnapshotMerge.Merge([hostSnapshot, .. vms.Select(v => v.Snapshot)]);
        var vmReports = vms.Select(v => RunReport.Build(v.Snapshot, v.Facts) with { Vm = v.Index }).ToList();
        var firstViolation = vms.Select(v => v.Facts.Checker.FirstViolation).FirstOrDefault(f => f is not null);
        var facts = new RunFacts
        {
            ExitStatus = exitStatus,
            Outcome = outcome,
            GuestPath = string.Join(" ", o.AllGuests),
            Vcpus = o.Vcpus * vms.Count,
            Instructions = vms.Sum(v => v.Facts.Instructions),
            WallSeconds = wallSeconds,
            Settings = Settings(o),
            Host = HostCountersOf(shared, memories, merged),
            Checker = o.Check ? new CheckerFacts(true, vms.Sum(v => v.Facts.Checker.Violations), firstViolation) : CheckerFacts.Off,
        };
        var traces = vms.Where(v => v.Snapshot.Trace is not null).Select(v => (v.Snapshot.Trace!, $"vm{v.Index}")).ToList();
        if (hostSnapshot.Trace is { } hostTrace) traces.Add((hostTrace, "host"));
        var report = RunReport.Build(merged, facts) with
        {
            Vms = vmReports,
            Trace = traces.Count == 0 ? null : new TraceSection
            {
                Events = traces.Sum(t => t.Item1.Events.Count),
                DroppedEvents = traces.Sum(t => t.Item1.DroppedEvents),
                CounterSamples = traces.Sum(t => t.Item1.Counters.Count),
            },
        };
        int status = exitStatus;
        if (o.ReportPath is { } reportPath)
            status = Try(status, "report", reportPath, () => ReportWriter.Write(report, reportPath));
        if (o.TracePath is { } tracePath)
            status = Try(status, "trace", tracePath, () =>
            {
                if (traces.Count == 0) throw new IOException("no timeline was recorded");
                TraceFileWriter.Write(traces, tracePath, facts.Settings);
            });
        if (o.PlotDirectory is { } plotDir)
            status = Try(status, "plots", plotDir, () =>
                Plots.Write(merged, plotDir, string.Join(" + ", o.AllGuests.Select(Path.GetFileName)), EndOfRunTable.SettingsLine(report.Settings)));
        if (o.Stats)
        {
            foreach (var line in EndOfRunTable.Render(report).TrimEnd('\n').Split('\n'))
                Log.Stat(_logger, line);
            foreach (var vm in vmReports)
            {
                Log.Stat(_logger, "");
                Log.Stat(_logger, $"vm{vm.Vm}: {vm.Guest} (exit status {vm.ExitStatus})");
                foreach (var line in EndOfRunTable.Render(vm).TrimEnd('\n').Split('\n'))
                    Log.Stat(_logger, $"vm{vm.Vm}: {line}");
            }
        }
        return status;
    }

    /// <summary>The shared host's counters, with every VM's forced page-outs and the grants' recalls.</summary>
    private static HostCounters HostCountersOf(SharedHost shared, IReadOnlyList<HostBackedMemory> memories, MeasurementSnapshot snapshot)
    {
        var first = HostCountersOf(memories[0], snapshot);
        var grants = shared.Grants.Grants;
        return first with
        {
            Other =
            [
                .. first.Other.Where(kv => kv.Key != "pagesForcedOut" && !kv.Key.StartsWith("pagesForcedOut", StringComparison.Ordinal)
                                           && !kv.Key.StartsWith("shrinkFrames", StringComparison.Ordinal)),
                new("pagesForcedOut", memories.Sum(m => m.PressurePages)),
                new("grantsAtEnd", grants.Count),
            ],
        };
    }
}
