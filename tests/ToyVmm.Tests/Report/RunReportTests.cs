using System.Text.Json;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Report;
using Xunit;
using static ToyVmm.Tests.Report.SyntheticSnapshots;

namespace ToyVmm.Tests.Report;

public class RunReportTests
{
    private static readonly string[] LatencyFields = ["count", "p50Ns", "p90Ns", "p99Ns", "p999Ns", "maxNs"];
    private static readonly string[] FaultKinds = ["present", "zeroFill", "swapCacheHit", "swapIn"];
    private static readonly string[] Events = ["reclaim", "pageOut", "discard", "unmap", "protect", "teardown"];

    /// <summary>Every field README "Reports, traces and plots" documents (placeholders expanded).</summary>
    public static IEnumerable<string> DocumentedFields()
    {
        string[] top = ["schemaVersion", "exitStatus", "outcome", "guest", "vcpus", "instructions", "wallSeconds", "mips",
            "settings", "faults.count", "faults.retries", "invalidations.pages",
            "shootdown.count", "shootdown.p50Ns", "shootdown.p99Ns", "shootdown.maxNs",
            "shootdown.neverHeld", "shootdown.acknowledged", "shootdown.shotDown", "shootdown.waited",
            "swap.pagesPagedOut",
            "host.framesTotal", "host.framesFree", "host.pageOuts", "host.swapIns", "host.swapCacheHits", "host.zeroFills",
            "host.writeErrors", "host.readErrors", "host.checksumErrors", "host.other",
            "checker.enabled", "checker.violations", "shadow", "trace.events", "trace.droppedEvents", "trace.counterSamples",
            "phases", "histograms"];
        foreach (var f in top) yield return f;
        foreach (var k in FaultKinds) foreach (var f in LatencyFields.Append("meanNs")) yield return $"faults.{k}.{f}";
        foreach (var f in LatencyFields.Append("meanNs")) yield return $"invalidations.{f}";
        foreach (var e in Events) foreach (var f in LatencyFields.Append("pages").Append("meanNs")) yield return $"invalidations.byEvent.{e}.{f}";
        foreach (var f in LatencyFields) { yield return $"swap.pageOutBatches.{f}"; yield return $"swap.reads.{f}"; }
        foreach (var k in FaultKinds) yield return $"histograms.faults.{k}";
        foreach (var e in Events) yield return $"histograms.invalidations.{e}";
        foreach (var s in new[] { "neverHeld", "acknowledged", "shotDown", "waited" }) yield return $"histograms.shootdown.{s}";
        yield return "histograms.swap.pageOutBatches";
        yield return "histograms.swap.reads";
    }

    private static JsonElement Json(RunReport report) => JsonDocument.Parse(ReportWriter.ToJson(report)).RootElement;

    private static JsonElement? At(JsonElement root, string path)
    {
        // histograms.<name> keys contain dots themselves: look them up whole.
        if (path.StartsWith("histograms.", StringComparison.Ordinal))
            return root.GetProperty("histograms").TryGetProperty(path["histograms.".Length..], out var h) ? h : null;
        var e = root;
        foreach (var part in path.Split('.'))
            if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty(part, out e)) return null;
        return e;
    }

    [Fact]
    public void Build_TwoPhaseRun_EveryDocumentedFieldPresent()
    {
        var trace = new TraceData { OriginTicks = 0, Tracks = [], Events = [], Counters = [], PhaseNames = [] };
        var root = Json(RunReport.Build(TwoPhases(trace), Facts()));
        var missing = DocumentedFields().Where(f => At(root, f) is null).ToList();
        Assert.Empty(missing);
        var phase = root.GetProperty("phases")[0];
        foreach (var f in new[] { "name", "instructions", "wallSeconds", "mips", "faults", "invalidations" })
            Assert.True(phase.TryGetProperty(f, out _), $"phases[0].{f} missing");
        foreach (var k in FaultKinds) foreach (var f in LatencyFields)
            Assert.True(phase.GetProperty("faults").GetProperty(k).TryGetProperty(f, out _), $"phases[0].faults.{k}.{f} missing");
        foreach (var e in Events)
            Assert.True(phase.GetProperty("invalidations").GetProperty("byEvent").TryGetProperty(e, out _), $"phases[0].invalidations.byEvent.{e} missing");
    }

    [Fact]
    public void Readme_EveryFieldItsTableNames_IsInTheReport()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "README.md"))) dir = Path.GetDirectoryName(dir);
        Assert.NotNull(dir);
        var lines = File.ReadAllLines(Path.Combine(dir, "README.md"));
        int start = Array.IndexOf(lines, "### The JSON report");
        Assert.True(start > 0, "README has no section 'The JSON report'");
        var fields = lines.Skip(start + 1).TakeWhile(l => !l.StartsWith('#'))
            .Where(l => l.StartsWith("| `", StringComparison.Ordinal))
            .Select(l => l[3..l.IndexOf('`', 3)].Replace("[]", ""))
            .Where(f => !f.Contains('<'))
            .ToList();
        Assert.True(fields.Count >= 30, $"only {fields.Count} fields found in the README table");
        var trace = new TraceData { OriginTicks = 0, Tracks = [], Events = [], Counters = [], PhaseNames = [] };
        var facts = Facts() with { Checker = new CheckerFacts(true, 1, "MMU invariant violated: ...") };
        // A run of several VMs has every field of one VM, and `vms` besides.
        var one = RunReport.Build(TwoPhases(trace), facts);
        var root = Json(one with { Vms = [one with { Vm = 0, Host = null }] });
        Assert.DoesNotContain(fields, f => At(root, f) is null);
    }

    [Fact]
    public void Readme_ShadowRow_NamesEveryShadowCounter()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "README.md"))) dir = Path.GetDirectoryName(dir);
        Assert.NotNull(dir);
        var row = File.ReadAllLines(Path.Combine(dir, "README.md")).Single(l => l.StartsWith("| `shadow` |", StringComparison.Ordinal));
        var missing = new ToyVmm.Mmu.Secondary.Shadow.ShadowCounts().ByName().Select(c => c.Key).Where(n => !row.Contains($"`{n}`")).ToList();
        Assert.Empty(missing);
    }

    [Fact]
    public void Build_FlatMemoryRunWithoutTrace_LeavesHostAndTraceOut()
    {
        var root = Json(RunReport.Build(TwoPhases(), Facts(host: false)));
        Assert.False(root.TryGetProperty("host", out _));
        Assert.False(root.TryGetProperty("trace", out _));
        Assert.True(root.TryGetProperty("faults", out _));
    }

    [Fact]
    public void Build_EveryLatency_PercentilesOrdered()
    {
        var root = Json(RunReport.Build(TwoPhases(), Facts()));
        int checkedObjects = 0;
        void Walk(JsonElement e, string path)
        {
            if (e.ValueKind == JsonValueKind.Array) { int i = 0; foreach (var x in e.EnumerateArray()) Walk(x, $"{path}[{i++}]"); return; }
            if (e.ValueKind != JsonValueKind.Object) return;
            if (e.TryGetProperty("p50Ns", out var p50) && e.TryGetProperty("p999Ns", out var p999))
            {
                long[] p = [p50.GetInt64(), e.GetProperty("p90Ns").GetInt64(), e.GetProperty("p99Ns").GetInt64(), p999.GetInt64(), e.GetProperty("maxNs").GetInt64()];
                for (int i = 1; i < p.Length; i++) Assert.True(p[i - 1] <= p[i], $"{path}: {string.Join(" > ", p)}");
                if (e.GetProperty("count").GetInt64() > 0) Assert.True(p[0] > 0, $"{path}: p50 is 0 with samples");
                checkedObjects++;
            }
            foreach (var prop in e.EnumerateObject()) Walk(prop.Value, $"{path}.{prop.Name}");
        }
        Walk(root, "$");
        Assert.True(checkedObjects >= 2 * (4 + 1 + 6) + 2, $"only {checkedObjects} latency objects seen");
    }

    [Fact]
    public void Build_TwoPhaseRun_CountsAddUpOverKindsAndPhases()
    {
        var snapshot = TwoPhases();
        var r = RunReport.Build(snapshot, Facts());
        FaultsSection[] all = [r.Faults, .. r.Phases.Select(p => p.Faults)];
        foreach (var f in all)
            Assert.Equal(f.Count, f.Present.Count + f.ZeroFill.Count + f.SwapCacheHit.Count + f.SwapIn.Count);
        foreach (var inv in r.Phases.Select(p => p.Invalidations).Append(r.Invalidations))
        {
            var events = EndOfRunTable.Events(inv.ByEvent).Select(e => e.Figures).ToList();
            Assert.Equal(inv.Count, events.Sum(e => e.Count));
            Assert.Equal(inv.Pages, events.Sum(e => e.Pages));
        }
        Assert.Equal(r.Faults.Present.Count, r.Phases.Sum(p => p.Faults.Present.Count));
        Assert.Equal(r.Faults.ZeroFill.Count, r.Phases.Sum(p => p.Faults.ZeroFill.Count));
        Assert.Equal(r.Faults.SwapIn.Count, r.Phases.Sum(p => p.Faults.SwapIn.Count));
        Assert.Equal(r.Faults.Retries, r.Phases.Sum(p => p.Faults.Retries));
        Assert.Equal(r.Invalidations.Count, r.Phases.Sum(p => p.Invalidations.Count));
        Assert.Equal(r.Instructions, r.Phases.Sum(p => p.Instructions));
        // And against what was recorded: 3 + 100 + 1000 + 10 present/zero-fill, 50 swap-cache hits, 200 swap-ins.
        Assert.Equal(1363, r.Faults.Count);
        Assert.Equal(2 + 300 + 120 + 1, r.Invalidations.Count);
        Assert.Equal(16 + 9_600 + 7_680 + 4, r.Invalidations.Pages);
        Assert.Equal(1008, r.Shootdown.Count);
        Assert.Equal(900, r.Shootdown.NeverHeld);
        Assert.Equal(10.667, r.Mips);
        Assert.Equal(["boot", "work"], r.Phases.Select(p => p.Name));
    }

    [Fact]
    public void Build_KnownValues_PercentilesWithinHistogramPrecision()
    {
        var r = RunReport.Build(TwoPhases(), Facts());
        // boot's present faults are 150, 160, 170 ns: at 3 digits every value is exact to 1 ns.
        var present = r.Phases[0].Faults.Present;
        Assert.Equal(160, present.P50Ns);
        Assert.Equal(170, present.MaxNs);
        Assert.Equal(160.0, present.MeanNs, 0);
        // work's swap-ins spread 20 µs .. 3 ms: p50 near 1.5 ms, within 0.1%.
        Assert.InRange(r.Phases[1].Faults.SwapIn.P50Ns, 1_490_000, 1_515_000);
    }

    [Fact]
    public void Build_Histograms_DecodeToTheReportedCounts()
    {
        var snapshot = TwoPhases();
        var r = RunReport.Build(snapshot, Facts());
        Assert.Equal(4 + 6 + 4 + 2, r.Histograms.Count);
        foreach (var (name, original) in RunReport.NamedHistograms(snapshot))
        {
            var decoded = HistogramCodec.Decode(r.Histograms[name]);
            Assert.Equal(original.TotalCount, decoded.TotalCount);
            if (original.TotalCount > 0)
            {
                Assert.Equal(original.GetValueAtPercentile(99), decoded.GetValueAtPercentile(99));
                Assert.Equal(HdrHistogram.HistogramExtensions.GetMaxValue(original), HdrHistogram.HistogramExtensions.GetMaxValue(decoded));
            }
        }
        Assert.Equal(r.Faults.SwapIn.Count, HistogramCodec.Decode(r.Histograms["faults.swapIn"]).TotalCount);
        Assert.Equal(r.Invalidations.ByEvent.PageOut.Count, HistogramCodec.Decode(r.Histograms["invalidations.pageOut"]).TotalCount);
    }

    [Fact]
    public void Decode_NotAHistogram_FormatException()
    {
        Assert.Throws<FormatException>(() => HistogramCodec.Decode("not base64!"));
        Assert.Throws<FormatException>(() => HistogramCodec.Decode(Convert.ToBase64String(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 })));
    }

    [Fact]
    public void Build_Settings_KeptInTheOrderGiven()
    {
        var json = ReportWriter.ToJson(RunReport.Build(TwoPhases(), Facts()));
        var names = JsonDocument.Parse(json).RootElement.GetProperty("settings").EnumerateObject().Select(p => p.Name).ToList();
        Assert.Equal(["memory", "vcpus", "host-memory", "pageout", "check", "seed"], names);
        Assert.Contains("\"pageout\": \"every=5ms,pages=64,pick=random\"", json);
    }

    [Fact]
    public void Build_EmptyRun_AllZeroNoFailure()
    {
        var r = RunReport.Build(SyntheticSnapshots.Empty(), Facts() with { Instructions = 0, WallSeconds = 0 });
        Assert.Equal(0, r.Faults.Count);
        Assert.Equal(0, r.Invalidations.MaxNs);
        Assert.Equal(0, r.Mips);
        Assert.Equal(0, HistogramCodec.Decode(r.Histograms["faults.present"]).TotalCount);
    }

    [Fact]
    public void Write_ToAFile_ReadsBackTheSameAndLeavesNoTempFile()
    {
        string dir = Directory.CreateTempSubdirectory("toyvmm-report").FullName;
        try
        {
            string path = Path.Combine(dir, "report.json");
            File.WriteAllText(path, "old");
            var report = RunReport.Build(TwoPhases(), Facts());
            ReportWriter.Write(report, path);
            var back = ReportWriter.Read(path);
            Assert.Equal(ReportWriter.ToJson(report), ReportWriter.ToJson(back));
            Assert.Equal(["report.json"], Directory.GetFiles(dir).Select(Path.GetFileName));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Write_MissingFolder_IOExceptionNamingThePath()
    {
        string path = Path.Combine(Path.GetTempPath(), $"toyvmm-no-such-{Guid.NewGuid():N}", "report.json");
        var ex = Assert.Throws<IOException>(() => ReportWriter.Write(RunReport.Build(TwoPhases(), Facts()), path));
        Assert.Equal($"cannot write {path}: the folder {Path.GetDirectoryName(path)} does not exist", ex.Message);
        Assert.Equal(ex.Message, AtomicFile.CheckWritable(path));
    }

    [Fact]
    public void CheckWritable_WritableFolder_NullAndNothingLeft()
    {
        string dir = Directory.CreateTempSubdirectory("toyvmm-check").FullName;
        try
        {
            Assert.Null(AtomicFile.CheckWritable(Path.Combine(dir, "report.json")));
            Assert.Empty(Directory.GetFileSystemEntries(dir));
            Assert.Equal($"cannot write {dir}: it is a folder", AtomicFile.CheckWritable(dir));
            Assert.Null(Plots.CheckWritable(Path.Combine(dir, "plots", "run1")));
            Assert.Empty(Directory.GetFileSystemEntries(dir));
            string file = Path.Combine(dir, "f");
            File.WriteAllText(file, "");
            Assert.Equal($"cannot write plots to {file}: it is a file", Plots.CheckWritable(file));
            Assert.Equal($"cannot write plots to {Path.Combine(file, "x")}: {file} is a file", Plots.CheckWritable(Path.Combine(file, "x")));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Of_EachKind_IsItsJsonFieldName()
    {
        Assert.Equal("swapCacheHit", ReportNames.Of(FaultKind.SwapCacheHit));
        Assert.Equal("pageOut", ReportNames.Of(InvalidateCause.PageOut));
        Assert.Equal("shotDown", ReportNames.Of(ShootdownStep.ShotDown));
    }
}
