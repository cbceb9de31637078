using ToyVmm.Cli;
using Xunit;

namespace ToyVmm.Tests.Cli;

/// <summary>--cpu and --tier-threshold on the command line, in the environment and in the report's settings.</summary>
public class CpuOptionTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("toyvmm-cpu-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private CommandLineResult Parse(Dictionary<string, string> env, params string[] args) =>
        CommandLine.Parse(args, new CliEnvironment(_dir, env));

    [Fact]
    public void Parse_NoCpuOption_TieredWithTheDefaultThreshold()
    {
        var o = Parse(new(), "run", "g.elf").Options!;
        Assert.Equal(CpuMode.Tiered, o.Cpu);
        Assert.Equal(RunOptions.DefaultTierThreshold, o.TierThreshold);
        Assert.Contains(RunOutputs.Settings(o), s => s.Key == "cpu" && s.Value == "tiered");
        Assert.Contains(RunOutputs.Settings(o), s => s.Key == "tierThreshold" && s.Value == RunOptions.DefaultTierThreshold.ToString());
    }

    [Fact]
    public void Parse_CpuInterpreter_ThresholdOff()
    {
        var o = Parse(new(), "run", "g.elf", "--cpu", "interpreter").Options!;
        Assert.Equal(CpuMode.Interpreter, o.Cpu);
        Assert.Contains(RunOutputs.Settings(o), s => s.Key == "cpu" && s.Value == "interpreter");
        Assert.Contains(RunOutputs.Settings(o), s => s.Key == "tierThreshold" && s.Value == "off");
    }

    [Fact]
    public void Parse_CpuTieredWithThreshold_BothSet()
    {
        var o = Parse(new(), "run", "g.elf", "--cpu", "tiered", "--tier-threshold=0").Options!;
        Assert.Equal(CpuMode.Tiered, o.Cpu);
        Assert.Equal(0, o.TierThreshold);
        Assert.Contains(RunOutputs.Settings(o), s => s.Key == "tierThreshold" && s.Value == "0");
    }

    [Fact]
    public void Parse_CpuFromTheEnvironment_Applies()
    {
        var o = Parse(new() { ["TOYVMM_CPU"] = "tiered", ["TOYVMM_TIER_THRESHOLD"] = "12" }, "run", "g.elf").Options!;
        Assert.Equal(CpuMode.Tiered, o.Cpu);
        Assert.Equal(12, o.TierThreshold);
    }

    [Fact]
    public void Parse_UnknownCpuMode_OneLineErrorNamingTheChoices()
    {
        var r = Parse(new(), "run", "g.elf", "--cpu", "jit");
        Assert.Null(r.Options);
        Assert.Contains("--cpu", r.Error);
        Assert.Contains("interpreter, tiered", r.Error);
        Assert.DoesNotContain("\n", r.Error);
    }

    [Fact]
    public void Parse_NegativeThreshold_Refused()
    {
        var r = Parse(new(), "run", "g.elf", "--tier-threshold", "-1");
        Assert.Null(r.Options);
        Assert.Contains("--tier-threshold", r.Error);
    }
}
