using ToyVmm.Cli;
using ToyVmm.Vm;
using Xunit;

namespace ToyVmm.Tests.Cli;

public class CommandLineTests : IDisposable
{
    // An empty working folder and no environment variables: the tests see no toyvmm.json
    // and no TOYVMM_ variable of the machine they run on.
    private readonly string _dir = Directory.CreateTempSubdirectory("toyvmm-cl-").FullName;
    private readonly CliEnvironment _env;

    public CommandLineTests() => _env = new CliEnvironment(_dir, new Dictionary<string, string>());

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private CommandLineResult Parse(params string[] args) => CommandLine.Parse(args, _env);

    [Fact]
    public void Parse_SeveralGuests_FirstIsGuestPathRestAreMoreGuestsInOrder()
    {
        var o = Parse("run", "a.elf", "b.elf", "c.elf", "--memory", "8M").Options!;
        Assert.Equal("a.elf", o.GuestPath);
        Assert.Equal(["b.elf", "c.elf"], o.MoreGuests);
        Assert.Equal(["a.elf", "b.elf", "c.elf"], o.AllGuests);
        Assert.Equal(8UL << 20, o.MemoryBytes);
    }

    [Fact]
    public void Parse_PinVcpus_IsASwitch_OffUnlessGiven_AndFromTheEnvironmentToo()
    {
        Assert.False(Parse("run", "g.elf").Options!.PinVcpus);
        Assert.True(Parse("run", "g.elf", "--pin-vcpus", "--vcpus", "2").Options!.PinVcpus);
        var env = new CliEnvironment(_dir, new Dictionary<string, string> { ["TOYVMM_PIN_VCPUS"] = "true" });
        Assert.True(CommandLine.Parse(["run", "g.elf"], env).Options!.PinVcpus);
        var copy = new RunOptions();
        Parse("run", "g.elf", "--pin-vcpus").Options!.CopyTo(copy);
        Assert.True(copy.PinVcpus);
        Assert.Contains(RunOutputs.Settings(copy), s => s.Key == "pinVcpus" && s.Value == "on");   // the report says how the run was made
    }

    [Fact]
    public void Parse_OneGuest_HasNoMoreGuests()
    {
        Assert.Empty(Parse("run", "a.elf").Options!.MoreGuests);
    }

    [Fact]
    public void Parse_FullRunLine_FillsEveryOption()
    {
        var r = Parse("run", "g.elf", "--memory", "128M", "--vcpus=3", "--max-instructions", "1000", "-v");
        Assert.Null(r.Error);
        var o = Assert.IsType<RunOptions>(r.Options);
        Assert.Equal("g.elf", o.GuestPath);
        Assert.Equal(128UL << 20, o.MemoryBytes);
        Assert.Equal(3, o.Vcpus);
        Assert.Equal(1000, o.MaxInstructions);
        Assert.True(o.Verbose);
    }

    [Fact]
    public void Parse_EveryOldOption_KeepsItsMeaning()
    {
        var o = Parse("run", "g.elf", "--ram", "32M", "--host-memory", "8M", "--check", "--stats", "--pageout-interval", "7",
            "--notifier-protocol", "broken-2008", "--swap-file", "/tmp/s.swap", "--verbose").Options!;
        Assert.Equal(32UL << 20, o.MemoryBytes);
        Assert.Equal(8UL << 20, o.HostMemoryBytes);
        Assert.True(o.Check);
        Assert.True(o.Stats);
        Assert.Equal(7, o.PageOutIntervalMs);
        Assert.Equal(ToyVmm.Mmu.Notifiers.NotifierProtocol.Broken2008, o.Protocol);
        Assert.Equal("/tmp/s.swap", o.SwapFile);
        Assert.True(o.Verbose);
        Assert.True(Parse("run", "g.elf", "--flat-memory").Options!.FlatMemory);
    }

    [Fact]
    public void Parse_NewOptions_Filled()
    {
        var o = Parse("run", "g.elf", "--report", "r.json", "--trace", "t.json", "--trace-limit", "5000", "--plot", "plots",
            "--seed", "18446744073709551615", "--quiet").Options!;
        Assert.Equal("r.json", o.ReportPath);
        Assert.Equal("t.json", o.TracePath);
        Assert.Equal(5000, o.TraceLimit);
        Assert.Equal("plots", o.PlotDirectory);
        Assert.Equal(ulong.MaxValue, o.Seed);
        Assert.True(o.Quiet);
    }

    [Fact]
    public void Parse_GuestOnly_UsesDefaults()
    {
        var o = Parse("run", "g.elf").Options!;
        Assert.Equal(RunOptions.DefaultMemoryBytes, o.MemoryBytes);
        Assert.Equal(1, o.Vcpus);
        Assert.Equal(0, o.MaxInstructions);
        Assert.Equal(RunOptions.DefaultTraceLimit, o.TraceLimit);
        Assert.Equal(1UL, o.Seed);
        Assert.Empty(o.PageOut);
        Assert.Null(o.ReportPath);
        Assert.Null(o.TracePath);
        Assert.Null(o.PlotDirectory);
        Assert.Null(o.ConfigPath);
        Assert.False(o.Quiet);
        Assert.False(o.Check);
    }

    [Fact]
    public void Parse_RepeatedPageOut_KeepsEveryScheduleInOrder()
    {
        var o = Parse("run", "g.elf", "--pageout", "every=5ms,pick=cold", "--pageout", "at=1s,fraction=0.5", "--pageout=shrink=16M@2s").Options!;
        Assert.Equal<PageOutSchedule>(
            [new PeriodicPageOut(TimeSpan.FromMilliseconds(5), null, PageOutPick.Cold),
             new BurstPageOut(TimeSpan.FromSeconds(1), 0.5, PageOutPick.Random),
             new HostShrink(16UL << 20, TimeSpan.FromSeconds(2))], o.PageOut);
        Assert.Equal(0, o.PageOutIntervalMs);
    }

    [Fact]
    public void Parse_PageOutInterval_IsShorthandForRandomEvery()
    {
        var o = Parse("run", "g.elf", "--pageout", "at=1s,fraction=1", "--pageout-interval", "5").Options!;
        Assert.Equal(5, o.PageOutIntervalMs);
        Assert.Equal<PageOutSchedule>(
            [new BurstPageOut(TimeSpan.FromSeconds(1), 1, PageOutPick.Random),
             new PeriodicPageOut(TimeSpan.FromMilliseconds(5), null, PageOutPick.Random)], o.PageOut);
    }

    [Fact]
    public void Parse_DoubleDash_TakesDashNameAsGuest()
    {
        Assert.Equal("-odd.elf", Parse("run", "--", "-odd.elf").Options!.GuestPath);
    }

    [Fact]
    public void Parse_NoGuest_LeavesItToTheValidator()
    {
        // The guest may come from the config file, so its absence is the validator's to report.
        var r = Parse("run");
        Assert.Null(r.Error);
        Assert.Equal("", r.Options!.GuestPath);
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    [InlineData("help")]
    public void Parse_Help_AsksForHelp(string arg)
    {
        var r = Parse(arg);
        Assert.True(r.Help);
        Assert.Null(r.Options);
        Assert.Null(r.Error);
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("run", "--help")]
    [InlineData("run", "-h")]
    [InlineData("run", "g.elf", "--memory", "64M", "--help")]
    [InlineData("help", "run")]
    public void Parse_Help_ListsEveryOptionAndExamples(params string[] args)
    {
        var r = Parse(args);
        Assert.True(r.Help);
        string help = r.Output!;
        foreach (var setting in RunSettings.All.Where(s => !s.IsGuest))
        {
            Assert.Contains(setting.Name, help);
            foreach (string alias in setting.Aliases) Assert.Contains(alias, help);
        }
        Assert.Contains("--config", help);
        Assert.Contains("GUEST.elf", help);
        Assert.Contains("Examples:", help);
        Assert.Contains("--pageout every=5ms", help);                  // a guest under host pressure
        Assert.Contains("--report out/run.json --trace out/trace.json", help);
        Assert.Contains("toyvmm run guest/build/memhot.elf", help);
    }

    [Fact]
    public void Parse_TopLevelHelp_ListsTheVerbs()
    {
        string help = Parse("--help").Output!;
        Assert.Contains("run", help);
        Assert.Contains("version", help);
        Assert.Contains("--version", help);
    }

    [Theory]
    [InlineData("--version")]
    [InlineData("version")]
    public void Parse_Version_PrintsToyvmmAndTheInformationalVersion(string arg)
    {
        var r = Parse(arg);
        Assert.Null(r.Error);
        Assert.False(r.Help);
        string expected = typeof(CommandLine).Assembly
            .GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .Cast<System.Reflection.AssemblyInformationalVersionAttribute>().Single().InformationalVersion;
        Assert.Equal($"toyvmm {expected}\n", r.Output);
    }

    [Theory]
    [InlineData("no command given")]
    [InlineData("unknown command 'go'", "go", "g.elf")]
    [InlineData("unknown command 'rnu' (did you mean run?)", "rnu", "g.elf")]
    [InlineData("unknown command 'verison' (did you mean version?)", "verison")]
    [InlineData("unknown option '--fast'", "run", "g.elf", "--fast")]
    [InlineData("unknown option '--memroy' (did you mean --memory?)", "run", "g.elf", "--memroy", "64M")]
    [InlineData("unknown option '--pageout-intervall' (did you mean --pageout-interval?)", "run", "g.elf", "--pageout-intervall", "5")]
    [InlineData("unknown option '--vcpu' (did you mean --vcpus?)", "run", "--vcpu", "2", "g.elf")]
    [InlineData("unknown option '--verison' (did you mean --version?)", "--verison")]
    [InlineData("--memory is an option of run", "--memory", "64M")]
    [InlineData("--version goes before any verb: toyvmm --version", "run", "g.elf", "--version")]
    [InlineData("--version goes before any verb: toyvmm --version", "run", "--version")]
    [InlineData("unknown option '--fast'", "run", "--fast", "g.elf")]
    [InlineData("--memory needs a value", "run", "g.elf", "--memory")]
    [InlineData("--memory needs a value", "run", "g.elf", "--memory", "--vcpus", "2")]
    [InlineData("--pageout needs a value", "run", "g.elf", "--pageout")]
    [InlineData("--pageout needs a value", "run", "g.elf", "--pageout", "every=1ms", "--pageout")]
    [InlineData("--pageout needs a value", "run", "g.elf", "--pageout", "--check")]
    [InlineData("--config needs a value", "run", "g.elf", "--config")]
    [InlineData("--memory is given more than once", "run", "g.elf", "--memory", "1G", "--memory", "2G")]
    [InlineData("--memory: '64Q' is not a size", "run", "g.elf", "--memory", "64Q")]
    [InlineData("--memory: '-1M' is not a size", "run", "g.elf", "--memory=-1M")]
    [InlineData("--ram: '1.5G' is not a size", "run", "g.elf", "--ram", "1.5G")]
    [InlineData("--host-memory: 'big' is not a size", "run", "g.elf", "--host-memory", "big")]
    [InlineData("--vcpus: 'two' is not a whole number", "run", "g.elf", "--vcpus", "two")]
    [InlineData("--vcpus: '-1' is not a whole number", "run", "g.elf", "--vcpus", "-1")]
    [InlineData("--vcpus: '99999999999' is too large", "run", "g.elf", "--vcpus", "99999999999")]
    [InlineData("--seed: '-1' is not a whole number", "run", "g.elf", "--seed", "-1")]
    [InlineData("--seed: '18446744073709551616' is too large", "run", "g.elf", "--seed", "18446744073709551616")]
    [InlineData("--trace-limit: 'many' is not a whole number", "run", "g.elf", "--trace-limit", "many")]
    [InlineData("--max-instructions: '1e6' is not a whole number", "run", "g.elf", "--max-instructions", "1e6")]
    [InlineData("--pageout-interval: '5ms' is not a whole number of milliseconds", "run", "g.elf", "--pageout-interval", "5ms")]
    [InlineData("--notifier-protocol: 'fast' is not one of sequence, broken-2008, pin, none", "run", "g.elf", "--notifier-protocol", "fast")]
    [InlineData("--pageout: 'every=5': every: '5' has no unit", "run", "g.elf", "--pageout", "every=5")]
    [InlineData("--pageout: 'every=5ms,pick=coldest': pick: 'coldest'", "run", "g.elf", "--pageout", "every=5ms", "--pageout", "every=5ms,pick=coldest")]
    [InlineData("--verbose takes no value", "run", "g.elf", "--verbose=yes")]
    [InlineData("--check takes no value", "run", "g.elf", "--check=false")]
    [InlineData("--pin-vcpus takes no value", "run", "g.elf", "--pin-vcpus=yes")]
    [InlineData("unknown option '--memroy'", "run", "a.elf", "b.elf", "--memroy", "8M")]
    [InlineData("unexpected argument 'now'", "version", "now")]
    [InlineData("--config missing.json: the file does not exist", "run", "g.elf", "--config", "missing.json")]
    public void Parse_BadLine_ReportsOneLineError(string expected, params string[] args)
    {
        var r = Parse(args);
        Assert.Null(r.Options);
        Assert.Null(r.Output);
        Assert.NotNull(r.Error);
        Assert.Contains(expected, r.Error);
        Assert.DoesNotContain('\n', r.Error);
    }
}

public class SizeParserTests
{
    [Theory]
    [InlineData("64M", 64UL << 20)]
    [InlineData("1G", 1UL << 30)]
    [InlineData("1g", 1UL << 30)]
    [InlineData("512K", 512UL << 10)]
    [InlineData("2GiB", 2UL << 30)]
    [InlineData("16MB", 16UL << 20)]
    [InlineData("4194304", 4194304UL)]
    public void TryParse_ValidSize_ReturnsBytes(string text, ulong bytes)
    {
        Assert.True(SizeParser.TryParse(text, out ulong b, out _));
        Assert.Equal(bytes, b);
    }

    [Theory]
    [InlineData("")]
    [InlineData("M")]
    [InlineData("1.5G")]
    [InlineData("0x100")]
    [InlineData("99999999999999999999")]
    [InlineData("99999999999999T")]
    public void TryParse_BadSize_Fails(string text)
    {
        Assert.False(SizeParser.TryParse(text, out _, out string error));
        Assert.Contains(text, error);
    }

    [Fact]
    public void Format_PicksLargestUnit()
    {
        Assert.Equal("64M", SizeParser.Format(64UL << 20));
        Assert.Equal("2G", SizeParser.Format(2UL << 30));
        Assert.Equal("1536K", SizeParser.Format(1536UL << 10));
        Assert.Equal("100", SizeParser.Format(100));
    }
}
