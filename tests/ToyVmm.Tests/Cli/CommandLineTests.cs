using ToyVmm.Cli;
using Xunit;

namespace ToyVmm.Tests.Cli;

public class CommandLineTests
{
    [Fact]
    public void Parse_FullRunLine_FillsEveryOption()
    {
        var r = CommandLine.Parse(["run", "g.elf", "--memory", "128M", "--vcpus=3", "--max-instructions", "1000", "-v"]);
        Assert.Null(r.Error);
        var o = Assert.IsType<RunOptions>(r.Options);
        Assert.Equal("g.elf", o.GuestPath);
        Assert.Equal(128UL << 20, o.MemoryBytes);
        Assert.Equal(3, o.Vcpus);
        Assert.Equal(1000, o.MaxInstructions);
        Assert.True(o.Verbose);
    }

    [Fact]
    public void Parse_GuestOnly_UsesDefaults()
    {
        var o = CommandLine.Parse(["run", "g.elf"]).Options!;
        Assert.Equal(RunOptions.DefaultMemoryBytes, o.MemoryBytes);
        Assert.Equal(1, o.Vcpus);
        Assert.Equal(0, o.MaxInstructions);
    }

    [Fact]
    public void Parse_DoubleDash_TakesDashNameAsGuest()
    {
        Assert.Equal("-odd.elf", CommandLine.Parse(["run", "--", "-odd.elf"]).Options!.GuestPath);
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    [InlineData("help")]
    public void Parse_Help_AsksForHelp(string arg)
    {
        Assert.True(CommandLine.Parse([arg]).Help);
    }

    [Theory]
    [InlineData("no command given")]
    [InlineData("unknown command 'go'", "go", "g.elf")]
    [InlineData("unknown option '--fast'", "run", "g.elf", "--fast")]
    [InlineData("--memory needs a value", "run", "g.elf", "--memory")]
    [InlineData("--memory: '64Q' is not a size", "run", "g.elf", "--memory", "64Q")]
    [InlineData("--memory: '-1M' is not a size", "run", "g.elf", "--memory=-1M")]
    [InlineData("--vcpus: 'two' is not a whole number", "run", "g.elf", "--vcpus", "two")]
    [InlineData("--vcpus: '-1' is not a whole number", "run", "g.elf", "--vcpus", "-1")]
    [InlineData("--verbose takes no value", "run", "g.elf", "--verbose=yes")]
    [InlineData("no guest file given", "run")]
    [InlineData("more than one guest file", "run", "a.elf", "b.elf")]
    public void Parse_BadLine_ReportsError(string expected, params string[] args)
    {
        var r = CommandLine.Parse(args);
        Assert.Null(r.Options);
        Assert.NotNull(r.Error);
        Assert.Contains(expected, r.Error);
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
