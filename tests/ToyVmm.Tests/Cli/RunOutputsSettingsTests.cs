using ToyVmm.Cli;
using Xunit;

namespace ToyVmm.Tests.Cli;

/// <summary>The report's <c>settings</c> keep up with the options: every option that shapes the run is listed.</summary>
public class RunOutputsSettingsTests
{
    /// <summary>Options that say where outputs go or how chatty the run is, not how it ran.</summary>
    private static readonly string[] NotExperimentSettings =
        ["--stats", "--report", "--trace", "--plot", "--quiet", "--verbose", "--config", "--pageout-interval"];

    [Fact]
    public void Settings_EveryOptionThatShapesTheRun_IsListedUnderItsConfigKey()
    {
        var listed = RunOutputs.Settings(new RunOptions { GuestPath = "g.elf" }).Select(s => s.Key).ToHashSet();
        var expected = RunSettings.All.Where(s => !NotExperimentSettings.Contains(s.Name)).Select(s => s.ConfigKey);
        Assert.All(expected, key => Assert.Contains(key, listed));
    }
}
