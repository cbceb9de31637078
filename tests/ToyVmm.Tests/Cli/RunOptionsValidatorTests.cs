using ToyVmm.Cli;
using ToyVmm.Tests.Loader;
using ToyVmm.Vm;
using Xunit;

namespace ToyVmm.Tests.Cli;

public class RunOptionsValidatorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("toyvmm-valid-").FullName;
    private readonly string _guest;

    public RunOptionsValidatorTests()
    {
        _guest = Path.Combine(_dir, "g.elf");
        File.WriteAllBytes(_guest, ElfBuilder.Valid().Build());
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private RunOptions Valid() => new() { GuestPath = _guest };

    private static string Problems(RunOptions o) => string.Join(" | ", RunOptionsValidator.Check(o).Select(f => f.Describe()));

    [Fact]
    public void Check_Defaults_Pass()
    {
        Assert.Empty(RunOptionsValidator.Check(Valid()));
    }

    [Fact]
    public void Check_NoGuest_Fails()
    {
        Assert.Equal("no guest file given", Problems(new RunOptions()));
    }

    [Fact]
    public void Check_WritableOutputs_PassAndCreateNothing()
    {
        var o = Valid();
        o.ReportPath = Path.Combine(_dir, "r.json");
        o.TracePath = Path.Combine(_dir, "t.json");
        o.PlotDirectory = Path.Combine(_dir, "plots", "run1");
        Assert.Empty(RunOptionsValidator.Check(o));
        Assert.False(File.Exists(o.ReportPath));
        Assert.False(Directory.Exists(Path.Combine(_dir, "plots")));
        Assert.Equal(["g.elf"], Directory.GetFileSystemEntries(_dir).Select(Path.GetFileName));   // no probe file left
    }

    [Fact]
    public void Check_ExistingReportFile_PassesAndKeepsItsContents()
    {
        var o = Valid();
        o.ReportPath = Path.Combine(_dir, "old.json");
        File.WriteAllText(o.ReportPath, "old");
        Assert.Empty(RunOptionsValidator.Check(o));
        Assert.Equal("old", File.ReadAllText(o.ReportPath));
    }

    [Fact]
    public void Check_ReportInMissingFolder_NamesPathAndReason()
    {
        var o = Valid();
        o.ReportPath = Path.Combine(_dir, "nope", "r.json");
        Assert.Equal($"--report: cannot write {o.ReportPath}: the folder {Path.Combine(_dir, "nope")} does not exist", Problems(o));
    }

    [Fact]
    public void Check_TraceIsAFolder_Fails()
    {
        var o = Valid();
        o.TracePath = _dir;
        Assert.Equal($"--trace: cannot write {_dir}: it is a folder", Problems(o));
    }

    [Fact]
    public void Check_ReportAndTraceSameFile_Fails()
    {
        var o = Valid();
        o.ReportPath = o.TracePath = Path.Combine(_dir, "x.json");
        Assert.Contains("--report and --trace both name", Problems(o));
    }

    [Fact]
    public void Check_PlotDirIsAFile_Fails()
    {
        var o = Valid();
        o.PlotDirectory = _guest;
        Assert.Equal($"--plot: cannot write plots to {_guest}: it is a file", Problems(o));
        o.PlotDirectory = Path.Combine(_guest, "sub");
        Assert.Equal($"--plot: cannot write plots to {o.PlotDirectory}: {_guest} is a file", Problems(o));
    }

    [Theory]
    [InlineData(999, "--trace-limit 999 must be at least 1000")]
    [InlineData(0, "--trace-limit 0 must be at least 1000")]
    public void Check_SmallTraceLimit_Fails(int limit, string expected)
    {
        var o = Valid();
        o.TraceLimit = limit;
        Assert.Equal(expected, Problems(o));
    }

    [Fact]
    public void Check_TraceLimitAtMinimum_Passes()
    {
        var o = Valid();
        o.TraceLimit = RunOptions.MinTraceLimit;
        Assert.Empty(RunOptionsValidator.Check(o));
    }

    [Fact]
    public void Check_FlatMemoryWithSchedule_Fails()
    {
        var o = Valid();
        o.FlatMemory = true;
        o.PageOut = [new PeriodicPageOut(TimeSpan.FromMilliseconds(5), null, PageOutPick.Random)];
        Assert.Contains("--flat-memory has no host", Problems(o));
    }

    [Fact]
    public void Check_MorePagesThanTheGuestHas_Fails()
    {
        var o = Valid();
        o.MemoryBytes = 4UL << 20;
        o.PageOut = [new PeriodicPageOut(TimeSpan.FromMilliseconds(5), 2048, PageOutPick.Cold)];
        Assert.Equal("--pageout 'every=5ms,pages=2048,pick=cold': pages=2048 is more than the guest's 1024 pages", Problems(o));
    }

    [Fact]
    public void Check_ShrinkLeavingTooLittleHost_Fails()
    {
        var o = Valid();
        o.HostMemoryBytes = 16UL << 20;
        o.PageOut = [new HostShrink(8UL << 20, TimeSpan.FromSeconds(1)), new HostShrink(8UL << 20, TimeSpan.FromSeconds(2))];
        Assert.Contains("shrink schedules take 16M of the host's 16M", Problems(o));
        o.PageOut = [new HostShrink(8UL << 20, TimeSpan.FromSeconds(1))];
        Assert.Empty(RunOptionsValidator.Check(o));
    }

    [Fact]
    public void Check_TooManySchedules_Fails()
    {
        var o = Valid();
        o.PageOut = [.. Enumerable.Repeat<PageOutSchedule>(new BurstPageOut(TimeSpan.Zero, 0.1, PageOutPick.Hot), RunOptionsValidator.MaxSchedules + 1)];
        Assert.Contains($"at most {RunOptionsValidator.MaxSchedules}", Problems(o));
    }

    [Fact]
    public void Describe_SettingFromConfig_NamesTheFileAndKey()
    {
        var failure = new RunOptionsFailure("--memory", "3M is outside 4M..64G");
        Assert.Equal("--memory 3M is outside 4M..64G", failure.Describe());
        Assert.Equal("toyvmm.json: memory: 3M is outside 4M..64G",
            failure.Describe(new Dictionary<string, string> { ["--memory"] = "toyvmm.json: memory" }));
        var sentence = new RunOptionsFailure("--report", "cannot write r.json: permission denied", Sentence: true);
        Assert.Equal("--report: cannot write r.json: permission denied", sentence.Describe());
        Assert.Equal("TOYVMM_REPORT: cannot write r.json: permission denied",
            sentence.Describe(new Dictionary<string, string> { ["--report"] = "TOYVMM_REPORT" }));
    }
}

public class RunOptionsTests
{
    [Fact]
    public void CopyTo_CopiesEveryProperty()
    {
        // Every settable property given a value unlike its default, so a property
        // missing from CopyTo shows up here.
        var source = new RunOptions
        {
            GuestPath = "g.elf", MoreGuests = ["h.elf"], MemoryBytes = 8UL << 20, Vcpus = 3, MaxInstructions = 9, HostMemoryBytes = 1UL << 20,
            FlatMemory = true, Check = true, PinVcpus = true, Protocol = ToyVmm.Mmu.Notifiers.NotifierProtocol.Broken2008, SwapFile = "s", Mmu = ToyVmm.Vm.SecondaryMmuKind.Shadow,
            PageOutIntervalMs = 4, PageOut = [new HostShrink(4096, TimeSpan.Zero)], Stats = true, ReportPath = "r",
            TracePath = "t", TraceLimit = 1234, PlotDirectory = "p", Seed = 77, Quiet = true, ConfigPath = "c", Verbose = true,
            Cpu = CpuMode.Interpreter, TierThreshold = 5,
        };
        var target = new RunOptions();
        source.CopyTo(target);
        var fresh = new RunOptions();
        foreach (var p in typeof(RunOptions).GetProperties().Where(p => p.CanWrite))
        {
            Assert.NotEqual(p.GetValue(fresh), p.GetValue(source));
            Assert.Equal(p.GetValue(source), p.GetValue(target));
        }
    }
}
