using ToyVmm.Cli;
using ToyVmm.Vm;
using Xunit;

namespace ToyVmm.Tests.Cli;

/// <summary>Settings from toyvmm.json, --config FILE and TOYVMM_ variables, and their order against the command line.</summary>
public class RunConfigurationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("toyvmm-config-").FullName;
    private readonly Dictionary<string, string> _vars = new();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private CommandLineResult Parse(params string[] args) => CommandLine.Parse(args, new CliEnvironment(_dir, _vars));

    private string WriteConfig(string json, string name = RunConfiguration.DefaultFileName)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, json);
        return path;
    }

    [Fact]
    public void Parse_ToyvmmJsonInWorkingFolder_SetsOptions()
    {
        string path = WriteConfig("""{ "memory": "128M", "vcpus": 2, "hostMemory": "16M", "check": true, "seed": 42 }""");
        var r = Parse("run", "g.elf");
        Assert.Null(r.Error);
        var o = r.Options!;
        Assert.Equal(128UL << 20, o.MemoryBytes);
        Assert.Equal(2, o.Vcpus);
        Assert.Equal(16UL << 20, o.HostMemoryBytes);
        Assert.True(o.Check);
        Assert.Equal(42UL, o.Seed);
        Assert.Equal(path, o.ConfigPath);
    }

    [Fact]
    public void Parse_NoConfigFile_IsFine()
    {
        var r = Parse("run", "g.elf");
        Assert.Null(r.Error);
        Assert.Null(r.Options!.ConfigPath);
    }

    [Fact]
    public void Parse_WholeExperimentInConfig_GuestAndEverySetting()
    {
        WriteConfig("""
            {
              "guest": "memhot.elf",
              "memory": "64M",
              "pageout": ["every=5ms,pages=8,pick=cold", "shrink=4M@1s"],
              "pageoutInterval": 3,
              "report": "out/r.json", "trace": "out/t.json", "traceLimit": 20000, "plot": "out/plots",
              "quiet": true, "stats": true, "verbose": false,
              "notifierProtocol": "broken-2008", "swapFile": "s.swap", "maxInstructions": 123456
            }
            """);
        var o = Parse("run").Options!;
        Assert.Equal("memhot.elf", o.GuestPath);
        Assert.Equal<PageOutSchedule>(
            [new PeriodicPageOut(TimeSpan.FromMilliseconds(5), 8, PageOutPick.Cold),
             new HostShrink(4UL << 20, TimeSpan.FromSeconds(1)),
             new PeriodicPageOut(TimeSpan.FromMilliseconds(3), null, PageOutPick.Random)], o.PageOut);
        Assert.Equal(3, o.PageOutIntervalMs);
        Assert.Equal("out/r.json", o.ReportPath);
        Assert.Equal("out/t.json", o.TracePath);
        Assert.Equal(20000, o.TraceLimit);
        Assert.Equal("out/plots", o.PlotDirectory);
        Assert.True(o.Quiet);
        Assert.True(o.Stats);
        Assert.False(o.Verbose);
        Assert.Equal(ToyVmm.Mmu.Notifiers.NotifierProtocol.Broken2008, o.Protocol);
        Assert.Equal("s.swap", o.SwapFile);
        Assert.Equal(123456, o.MaxInstructions);
    }

    [Fact]
    public void Parse_ConfigOption_ReadsThatFileInsteadOfToyvmmJson()
    {
        WriteConfig("""{ "vcpus": 2 }""");
        string other = WriteConfig("""{ "vcpus": 3 }""", "exp.json");
        Assert.Equal(3, Parse("run", "g.elf", "--config", "exp.json").Options!.Vcpus);
        Assert.Equal(3, Parse("run", "g.elf", "--config", other).Options!.Vcpus);
        Assert.Equal(2, Parse("run", "g.elf").Options!.Vcpus);
    }

    [Fact]
    public void Parse_EnvironmentVariable_SetsOptions()
    {
        _vars["TOYVMM_MEMORY"] = "128M";
        _vars["toyvmm_vcpus"] = "2";
        _vars["TOYVMM_HOST_MEMORY"] = "8M";
        _vars["TOYVMM_PAGEOUT__0"] = "every=5ms";
        _vars["TOYVMM_PAGEOUT__1"] = "at=2s,fraction=0.25";
        _vars["TOYVMM_QUIET"] = "true";
        _vars["MEMORY"] = "1G";   // no prefix: not ours
        var o = Parse("run", "g.elf").Options!;
        Assert.Equal(128UL << 20, o.MemoryBytes);
        Assert.Equal(2, o.Vcpus);
        Assert.Equal(8UL << 20, o.HostMemoryBytes);
        Assert.True(o.Quiet);
        Assert.Equal<PageOutSchedule>(
            [new PeriodicPageOut(TimeSpan.FromMilliseconds(5), null, PageOutPick.Random),
             new BurstPageOut(TimeSpan.FromSeconds(2), 0.25, PageOutPick.Random)], o.PageOut);
    }

    [Fact]
    public void Parse_OtherToyvmmVariables_AreNotSettingsAndAreIgnored()
    {
        _vars["TOYVMM_NO_FUSE"] = "1";
        _vars["TOYVMM_DIFF_SCALE"] = "4";
        Assert.Null(Parse("run", "g.elf").Error);
    }

    [Fact]
    public void Parse_EnvironmentOverFile_CommandLineOverBoth()
    {
        WriteConfig("""{ "memory": "32M", "vcpus": 2, "seed": 5, "pageout": ["every=9ms"] }""");
        _vars["TOYVMM_VCPUS"] = "3";
        _vars["TOYVMM_SEED"] = "6";
        var fromLayers = Parse("run", "g.elf").Options!;
        Assert.Equal(32UL << 20, fromLayers.MemoryBytes);   // file only
        Assert.Equal(3, fromLayers.Vcpus);                   // env over file
        Assert.Equal(6UL, fromLayers.Seed);

        var o = Parse("run", "g.elf", "--vcpus", "4", "--memory", "16M", "--pageout", "at=1s,fraction=1").Options!;
        Assert.Equal(4, o.Vcpus);
        Assert.Equal(16UL << 20, o.MemoryBytes);
        Assert.Equal(6UL, o.Seed);
        // A list on a later layer replaces the earlier one's, it does not extend it.
        Assert.Equal<PageOutSchedule>([new BurstPageOut(TimeSpan.FromSeconds(1), 1, PageOutPick.Random)], o.PageOut);
    }

    [Fact]
    public void Parse_EnvironmentList_ReplacesTheFilesList()
    {
        WriteConfig("""{ "pageout": ["every=9ms", "every=8ms"] }""");
        _vars["TOYVMM_PAGEOUT__0"] = "every=1ms";
        Assert.Equal<PageOutSchedule>([new PeriodicPageOut(TimeSpan.FromMilliseconds(1), null, PageOutPick.Random)],
            Parse("run", "g.elf").Options!.PageOut);
    }

    [Fact]
    public void Parse_PageOutAsSingleString_IsAListOfOne()
    {
        WriteConfig("""{ "pageout": "shrink=1M@1s" }""");
        Assert.Equal<PageOutSchedule>([new HostShrink(1UL << 20, TimeSpan.FromSeconds(1))], Parse("run", "g.elf").Options!.PageOut);
    }

    [Fact]
    public void Parse_GuestOnCommandLine_WinsOverConfig()
    {
        WriteConfig("""{ "guest": "a.elf" }""");
        Assert.Equal("b.elf", Parse("run", "b.elf").Options!.GuestPath);
    }

    [Fact]
    public void Parse_KeysIgnoreCaseDashesAndUnderscores()
    {
        WriteConfig("""{ "HOST-MEMORY": "16M", "max_instructions": 5 }""");
        var o = Parse("run", "g.elf").Options!;
        Assert.Equal(16UL << 20, o.HostMemoryBytes);
        Assert.Equal(5, o.MaxInstructions);
    }

    [Fact]
    public void Parse_SourcesNameTheLayerOfEachSetting()
    {
        WriteConfig("""{ "memory": "32M", "vcpus": 2 }""");
        _vars["TOYVMM_SEED"] = "6";
        var r = Parse("run", "g.elf", "--vcpus", "1");
        Assert.Equal("toyvmm.json: memory", r.Sources["--memory"]);
        Assert.Equal("TOYVMM_SEED", r.Sources["--seed"]);
        Assert.False(r.Sources.ContainsKey("--vcpus"));   // the command line set it last
    }

    [Theory]
    [InlineData("""{ "memory": "64Q" }""", "toyvmm.json: memory: '64Q' is not a size")]
    [InlineData("""{ "vcpus": "two" }""", "toyvmm.json: vcpus: 'two' is not a whole number")]
    [InlineData("""{ "check": "yes" }""", "toyvmm.json: check: 'yes' is not true or false")]
    [InlineData("""{ "pageout": ["every=5ms", "every=5"] }""", "toyvmm.json: pageout:1: 'every=5': every: '5' has no unit")]
    [InlineData("""{ "memroy": "64M" }""", "toyvmm.json: memroy: unknown key (did you mean 'memory'?)")]
    [InlineData("""{ "colour": "blue" }""", "toyvmm.json: colour: unknown key")]
    [InlineData("""{ "config": "other.json" }""", "toyvmm.json: config: unknown key")]
    [InlineData("""{ "memory": { "size": "64M" } }""", "toyvmm.json: memory: must be a single value")]
    [InlineData("""{ "memory": "64M", "Memory": "32M" }""", "toyvmm.json: not valid JSON")]
    [InlineData("""{ "hostMemory": "16M", "host-memory": "32M" }""", "is set twice")]
    [InlineData("""{ "memory": """, "toyvmm.json: not valid JSON")]
    [InlineData("""[ "memory" ]""", "toyvmm.json: not valid JSON")]
    [InlineData("""not json""", "toyvmm.json: not valid JSON")]
    public void Parse_BadConfigFile_OneLineNamingFileKeyAndProblem(string json, string expected)
    {
        WriteConfig(json);
        var r = Parse("run", "g.elf");
        Assert.Null(r.Options);
        Assert.Contains(expected, r.Error);
        Assert.DoesNotContain('\n', r.Error!);
    }

    [Fact]
    public void Parse_BadValueInNamedConfig_NamesThatFile()
    {
        WriteConfig("""{ "traceLimit": "lots" }""", "exp.json");
        Assert.Equal("exp.json: traceLimit: 'lots' is not a whole number", Parse("run", "g.elf", "--config", "exp.json").Error);
    }

    [Theory]
    [InlineData("TOYVMM_MEMORY", "64Q", "TOYVMM_MEMORY: '64Q' is not a size")]
    [InlineData("TOYVMM_VCPUS", "x", "TOYVMM_VCPUS: 'x' is not a whole number")]
    [InlineData("TOYVMM_PAGEOUT__0", "every=5", "TOYVMM_PAGEOUT__0: 'every=5': every: '5' has no unit")]
    public void Parse_BadEnvironmentValue_NamesTheVariable(string name, string value, string expected)
    {
        _vars[name] = value;
        Assert.StartsWith(expected, Parse("run", "g.elf").Error);
    }

    [Fact]
    public void Parse_BadValueOverriddenOnCommandLine_StillAnError()
    {
        // Every layer is read whole: a broken file is reported even when the line overrides the key.
        WriteConfig("""{ "memory": "64Q" }""");
        Assert.Contains("toyvmm.json: memory", Parse("run", "g.elf", "--memory", "64M").Error);
    }

    [Fact]
    public void Parse_ConfigIsAFolder_Refused()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "cfg"));
        Assert.Equal("--config cfg: is a folder, not a file", Parse("run", "g.elf", "--config", "cfg").Error);
    }
}
