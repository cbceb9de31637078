using ToyVmm.Cli;
using Xunit;

namespace ToyVmm.Tests.Cli;

/// <summary>A usage error that quotes what was typed stays one line, whatever control characters it holds.</summary>
public class OneLineTests
{
    private static readonly CliEnvironment Empty = new(Path.GetTempPath(), new Dictionary<string, string>());

    [Fact]
    public void Escape_ControlCharacters_WrittenAsEscapes()
    {
        Assert.Equal(@"a\nb\rc\td\x1b[2Je\x7f", OneLine.Escape("a\nb\rc\td\u001b[2Je\u007f"));
        Assert.Equal("plain ünïcode", OneLine.Escape("plain ünïcode"));
    }

    [Fact]
    public void Parse_VerbWithCarriageReturn_ErrorIsOneLine()
    {
        var r = CommandLine.Parse(["run\r--vcpus", "3"], Empty);
        Assert.Equal(@"unknown command 'run\r--vcpus'", r.Error);
    }

    [Fact]
    public void Parse_UnknownOptionWithNewline_ErrorIsOneLine()
    {
        var r = CommandLine.Parse(["run", "g.elf", "--bad\nname"], Empty);
        Assert.StartsWith(@"unknown option '--bad\nname'", r.Error);
        Assert.DoesNotContain('\n', r.Error!);
    }

    [Fact]
    public void Describe_GuestPathWithEscape_OneLine()
    {
        var o = new RunOptions { GuestPath = "no\u001bsuch\n.elf" };
        var failure = Assert.Single(RunOptionsValidator.Check(o), f => f.Setting == RunSettings.GuestName);
        Assert.Equal(@"guest file 'no\x1bsuch\n.elf' does not exist", failure.Describe());
    }
}
