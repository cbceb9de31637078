using ToyVmm.Cli;
using ToyVmm.Tests.Loader;
using ToyVmm.Tests.Vm;
using Xunit;

namespace ToyVmm.Tests.Cli;

/// <summary>The program's exit statuses for bad command lines and bad guests (run in-process).</summary>
public class ToyVmmAppTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("toyvmm-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string WriteFile(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    // The temporary folder is the working folder and the environment is empty: the
    // machine's toyvmm.json and TOYVMM_ variables do not reach these runs.
    private readonly Dictionary<string, string> _vars = new();

    private async Task<(int Code, string Messages, byte[] Console)> Run(params string[] args)
    {
        var messages = new StringWriter();
        var console = new MemoryStream();
        int code = await ToyVmmApp.RunAsync(args, console, messages, new CliEnvironment(_dir, _vars));
        return (code, messages.ToString(), console.ToArray());
    }

    /// <summary>A guest that prints "ran" and halts: if it ran, the console says so.</summary>
    private string PrintingGuest() =>
        WriteFile("ran.elf", AsmGuest.Build(a => { a.Print("ran\n"); a.hlt(); }).File);

    private static void AssertOneUsageError(string messages, string expected)
    {
        var lines = messages.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.StartsWith("toyvmm: error: ", lines[0]);
        Assert.Contains(expected, lines[0]);
        Assert.Equal(CommandLine.Usage, lines[1]);
    }

    [Theory]
    [InlineData]
    [InlineData("walk")]
    [InlineData("run")]
    [InlineData("run", "x.elf", "--bogus")]
    [InlineData("run", "x.elf", "--memory", "lots")]
    [InlineData("run", "x.elf", "--vcpus")]
    public async Task RunAsync_BadSyntax_ExitsTwoWithUsage(params string[] args)
    {
        var (code, messages, console) = await Run(args);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains(CommandLine.Usage, messages);
        Assert.StartsWith("toyvmm: error: ", messages);
        Assert.Equal(2, messages.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Empty(console);
    }

    [Fact]
    public async Task RunAsync_MissingGuestFile_ExitsTwoNamingIt()
    {
        string path = Path.Combine(_dir, "absent.elf");
        var (code, messages, _) = await Run("run", path);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains($"guest file '{path}' does not exist", messages);
        Assert.Contains(CommandLine.Usage, messages);
    }

    [Theory]
    [InlineData("3M", "is outside 4M..64G")]
    [InlineData("128G", "is outside 4M..64G")]
    [InlineData("4100K", "is not a multiple of 1M")]
    public async Task RunAsync_BadMemory_ExitsTwo(string memory, string expected)
    {
        string guest = WriteFile("g.elf", ElfBuilder.Valid().Build());
        var (code, messages, _) = await Run("run", guest, "--memory", memory);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains(expected, messages);
    }

    [Theory]
    [InlineData("0", "must be at least 1")]
    [InlineData("16", "at most 15 vCPUs fit")]
    public async Task RunAsync_BadVcpuCount_ExitsTwo(string vcpus, string expected)
    {
        string guest = WriteFile("g.elf", ElfBuilder.Valid().Build());
        var (code, messages, _) = await Run("run", guest, "--vcpus", vcpus);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains(expected, messages);
    }

    [Fact]
    public async Task RunAsync_Help_ExitsZero()
    {
        var (code, messages, _) = await Run("--help");
        Assert.Equal(0, code);
        Assert.Contains("--memory, --ram <SIZE>", messages);
        Assert.Contains("Examples:", messages);
    }

    [Theory]
    [InlineData("--version")]
    [InlineData("version")]
    public async Task RunAsync_Version_PrintsItAndExitsZero(string arg)
    {
        var (code, messages, console) = await Run(arg);
        Assert.Equal(0, code);
        Assert.Equal(CommandLine.VersionText + "\n", messages);
        Assert.StartsWith("toyvmm ", messages);
        Assert.Empty(console);
    }

    [Theory]
    [InlineData("unknown option '--memroy' (did you mean --memory?)", "--memroy", "64M")]
    [InlineData("--memory needs a value", "--memory")]
    [InlineData("--memory: '64Q' is not a size", "--memory", "64Q")]
    [InlineData("--vcpus: 'two' is not a whole number", "--vcpus", "two")]
    [InlineData("--pageout: 'every=5ms,pick=coldest': pick: 'coldest' is not one of", "--pageout", "every=5ms,pick=coldest")]
    [InlineData("--trace-limit 10 must be at least 1000", "--trace-limit", "10")]
    [InlineData("--memory 3M is outside 4M..64G", "--memory", "3M")]
    [InlineData("--config nothere.json: the file does not exist", "--config", "nothere.json")]
    [InlineData("--check takes no value", "--check=yes")]
    public async Task RunAsync_UsageError_OneLineUsageStatusTwoAndNothingRuns(string expected, params string[] options)
    {
        string guest = PrintingGuest();
        var (code, messages, console) = await Run(["run", guest, .. options]);
        Assert.Equal(ExitCodes.Usage, code);
        AssertOneUsageError(messages, expected);
        Assert.Empty(console);
    }

    [Fact]
    public async Task RunAsync_UnwritableOutputs_StatusTwoNamingThePath()
    {
        string guest = PrintingGuest();
        string report = Path.Combine(_dir, "missing", "r.json");
        var (code, messages, console) = await Run("run", guest, "--report", report);
        Assert.Equal(ExitCodes.Usage, code);
        AssertOneUsageError(messages, $"--report: cannot write {report}: the folder {Path.Combine(_dir, "missing")} does not exist");
        Assert.Empty(console);

        (code, messages, _) = await Run("run", guest, "--trace", _dir);
        Assert.Equal(ExitCodes.Usage, code);
        AssertOneUsageError(messages, $"--trace: cannot write {_dir}: it is a folder");

        (code, messages, _) = await Run("run", guest, "--plot", Path.Combine(guest, "plots"));
        Assert.Equal(ExitCodes.Usage, code);
        AssertOneUsageError(messages, $"--plot: cannot write plots to {Path.Combine(guest, "plots")}: {guest} is a file");
    }

    [Fact]
    public async Task RunAsync_SeveralProblems_StillOneLine()
    {
        var (code, messages, _) = await Run("run", Path.Combine(_dir, "absent.elf"), "--memory", "3M", "--trace-limit", "5");
        Assert.Equal(ExitCodes.Usage, code);
        AssertOneUsageError(messages, "does not exist; --memory 3M is outside 4M..64G; --trace-limit 5 must be at least 1000");
    }

    [Fact]
    public async Task RunAsync_PlotFolder_CreatedOnlyWhenEveryCheckPasses()
    {
        string guest = PrintingGuest();
        string plots = Path.Combine(_dir, "plots");
        var (code, _, _) = await Run("run", guest, "--plot", plots, "--memory", "3M");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.False(Directory.Exists(plots));

        var (ok, _, console) = await Run("run", guest, "--plot", plots);
        Assert.Equal(0, ok);
        Assert.True(Directory.Exists(plots));
        Assert.Equal("ran\n", System.Text.Encoding.ASCII.GetString(console));
    }

    [Fact]
    public async Task RunAsync_UnwritableReportFromConfig_NamesTheFileAndKey()
    {
        File.WriteAllText(Path.Combine(_dir, RunConfiguration.DefaultFileName), """{ "report": "no/such/r.json" }""");
        var (code, messages, console) = await Run("run", PrintingGuest());
        Assert.Equal(ExitCodes.Usage, code);
        AssertOneUsageError(messages, "toyvmm.json: report: cannot write no/such/r.json: the folder ");
        Assert.Empty(console);
    }

    [Fact]
    public async Task RunAsync_BadValueInConfigFile_StatusTwoNamingFileKeyAndValue()
    {
        string guest = PrintingGuest();
        File.WriteAllText(Path.Combine(_dir, RunConfiguration.DefaultFileName), """{ "hostMemory": "lots" }""");
        var (code, messages, console) = await Run("run", guest);
        Assert.Equal(ExitCodes.Usage, code);
        AssertOneUsageError(messages, "toyvmm.json: hostMemory: 'lots' is not a size");
        Assert.Empty(console);
    }

    [Fact]
    public async Task RunAsync_MalformedConfigFile_StatusTwo()
    {
        File.WriteAllText(Path.Combine(_dir, RunConfiguration.DefaultFileName), "{ \"memory\": ");
        var (code, messages, _) = await Run("run", PrintingGuest());
        Assert.Equal(ExitCodes.Usage, code);
        AssertOneUsageError(messages, "toyvmm.json: not valid JSON: ");
    }

    [Fact]
    public async Task RunAsync_OutOfRangeValueFromConfigOrEnvironment_NamesWhereItCameFrom()
    {
        string guest = PrintingGuest();
        File.WriteAllText(Path.Combine(_dir, "exp.json"), """{ "memory": "3M" }""");
        var (code, messages, _) = await Run("run", guest, "--config", "exp.json");
        Assert.Equal(ExitCodes.Usage, code);
        AssertOneUsageError(messages, "exp.json: memory: 3M is outside 4M..64G");

        _vars["TOYVMM_VCPUS"] = "0";
        (code, messages, _) = await Run("run", guest);
        Assert.Equal(ExitCodes.Usage, code);
        AssertOneUsageError(messages, "TOYVMM_VCPUS: 0 must be at least 1");
    }

    [Fact]
    public async Task RunAsync_GuestFromConfigFile_Runs()
    {
        string guest = PrintingGuest();
        File.WriteAllText(Path.Combine(_dir, RunConfiguration.DefaultFileName), $$"""{ "guest": "{{guest}}", "memory": "16M" }""");
        var (code, messages, console) = await Run("run");
        Assert.Equal(0, code);
        Assert.Equal("", messages);
        Assert.Equal("ran\n", System.Text.Encoding.ASCII.GetString(console));
    }

    [Fact]
    public async Task RunAsync_RefusedElf_ExitsThree()
    {
        var b = ElfBuilder.Valid();
        b.Type = 3;
        string guest = WriteFile("pie.elf", b.Build());
        var (code, _, console) = await Run("run", guest);
        Assert.Equal(ExitCodes.BadGuestFile, code);
        Assert.Empty(console);
    }

    [Fact]
    public async Task RunAsync_SegmentInReservedTopOfSmallRam_ExitsThree()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs[1].Paddr = b.Phdrs[1].Vaddr = 0x380000;   // fine with 64M, in the reserved top with 4M
        string guest = WriteFile("big.elf", b.Build());
        var (code, _, _) = await Run("run", guest, "--memory", "4M");
        Assert.Equal(ExitCodes.BadGuestFile, code);
    }

    [Fact]
    public async Task RunAsync_MoreRamThanTheHostHas_ExitsFive()
    {
        ulong host = (ulong)GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        Assert.True(host < RunOptions.MaxMemoryBytes, $"this test needs a host with less than 64 GiB (it has {host} bytes)");
        string guest = WriteFile("g.elf", ElfBuilder.Valid().Build());
        var (code, _, console) = await Run("run", guest, "--memory", "64G");
        Assert.Equal(ExitCodes.HostOutOfMemory, code);
        Assert.Empty(console);
    }
}
