using ToyVmm.Cli;
using ToyVmm.Vm;
using Xunit;

namespace ToyVmm.Tests.Cli;

public class PageOutScheduleParserTests
{
    private static PageOutSchedule Parse(string text)
    {
        Assert.True(PageOutScheduleParser.TryParse(text, out var schedule, out string error), error);
        return schedule!;
    }

    [Fact]
    public void TryParse_EveryAlone_RandomPickAndRandomPageCount()
    {
        Assert.Equal(new PeriodicPageOut(TimeSpan.FromMilliseconds(5), null, PageOutPick.Random), Parse("every=5ms"));
    }

    [Fact]
    public void TryParse_EveryWithPagesAndPick_FillsBoth()
    {
        Assert.Equal(new PeriodicPageOut(TimeSpan.FromSeconds(2), 64, PageOutPick.Cold), Parse("every=2s,pages=64,pick=cold"));
    }

    [Fact]
    public void TryParse_KeysInAnyOrderWithSpacesAndCase_SameSchedule()
    {
        Assert.Equal(Parse("every=250us,pages=3,pick=sweep"), Parse(" pick=SWEEP , Pages=3,every=250us "));
    }

    [Theory]
    [InlineData("random", PageOutPick.Random)]
    [InlineData("cold", PageOutPick.Cold)]
    [InlineData("hot", PageOutPick.Hot)]
    [InlineData("sweep", PageOutPick.Sweep)]
    public void TryParse_EachPick_Parsed(string pick, PageOutPick expected)
    {
        Assert.Equal(expected, Assert.IsType<PeriodicPageOut>(Parse($"every=1ms,pick={pick}")).Pick);
        Assert.Equal(expected, Assert.IsType<BurstPageOut>(Parse($"at=1s,fraction=1,pick={pick}")).Pick);
    }

    [Fact]
    public void TryParse_Burst_FillsAtAndFraction()
    {
        Assert.Equal(new BurstPageOut(TimeSpan.FromSeconds(2), 0.5, PageOutPick.Random), Parse("at=2s,fraction=0.5"));
        Assert.Equal(new BurstPageOut(TimeSpan.FromMilliseconds(1500), 0.25, PageOutPick.Hot), Parse("fraction=.25,at=1.5s,pick=hot"));
        Assert.Equal(TimeSpan.Zero, Assert.IsType<BurstPageOut>(Parse("at=0s,fraction=1")).At);
    }

    [Fact]
    public void TryParse_Shrink_FillsBytesAndTime()
    {
        Assert.Equal(new HostShrink(16UL << 20, TimeSpan.FromSeconds(1)), Parse("shrink=16M@1s"));
        Assert.Equal(new HostShrink(8192, TimeSpan.FromMilliseconds(300)), Parse("shrink=8K@300ms"));
    }

    [Theory]
    [InlineData("every=5ms")]
    [InlineData("every=2s,pages=64,pick=cold")]
    [InlineData("at=1s,fraction=0.5,pick=hot")]
    [InlineData("shrink=16M@1s")]
    [InlineData("every=250us,pick=sweep")]
    public void Format_ParsedSchedule_RoundTrips(string text)
    {
        Assert.Equal(text, PageOutScheduleParser.Format(Parse(text)));
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("   ", "empty")]
    [InlineData("every", "'every' is not key=value")]
    [InlineData("every=5ms,,pages=2", "empty part")]
    [InlineData("every=", "every= has no value")]
    [InlineData("every=5", "every: '5' has no unit")]
    [InlineData("every=5m", "every: '5m' is not a duration")]
    [InlineData("every=fast", "every: 'fast' is not a duration")]
    [InlineData("every=-5ms", "every: '-5ms' is not a duration")]
    [InlineData("every=0ms", "every: '0ms' is shorter than the minimum 100us")]
    [InlineData("every=50us", "shorter than the minimum")]
    [InlineData("every=2d", "every: '2d' is not a duration")]
    [InlineData("every=100000s", "longer than a day")]
    [InlineData("every=5ms,pages=0", "pages: '0' is not a whole number from 1")]
    [InlineData("every=5ms,pages=lots", "pages: 'lots' is not a whole number")]
    [InlineData("every=5ms,pages=-3", "pages: '-3'")]
    [InlineData("every=5ms,pages=99999999999", "pages: '99999999999'")]
    [InlineData("every=5ms,pick=coldest", "pick: 'coldest' is not one of random, cold, hot, sweep")]
    [InlineData("every=5ms,every=6ms", "every= is given twice")]
    [InlineData("every=5ms,page=3", "unknown key 'page' (did you mean 'pages'?)")]
    [InlineData("evry=5ms", "unknown key 'evry' (did you mean 'every'?)")]
    [InlineData("when=5ms", "unknown key 'when' (keys: every, at, shrink, pages, pick, fraction)")]
    [InlineData("pages=3", "neither every=, at= nor shrink=")]
    [InlineData("every=5ms,at=1s,fraction=1", "every= and at= cannot be combined")]
    [InlineData("every=5ms,fraction=0.5", "'fraction' does not go with every= (every= takes pages, pick)")]
    [InlineData("at=1s", "at= needs fraction=F")]
    [InlineData("at=1s,fraction=0", "fraction: '0' is not a number greater than 0 and at most 1")]
    [InlineData("at=1s,fraction=1.5", "fraction: '1.5'")]
    [InlineData("at=1s,fraction=half", "fraction: 'half'")]
    [InlineData("at=1s,fraction=1e-1", "fraction: '1e-1'")]
    [InlineData("at=1s,fraction=0.5,pages=3", "'pages' does not go with at=")]
    [InlineData("at=soon,fraction=0.5", "at: 'soon' is not a duration")]
    [InlineData("shrink=16M", "shrink: '16M' is not SIZE@DURATION")]
    [InlineData("shrink=16Q@1s", "shrink: '16Q' is not a size")]
    [InlineData("shrink=0@1s", "shrink: '0' must be a positive multiple of 4K")]
    [InlineData("shrink=1000@1s", "shrink: '1000' must be a positive multiple of 4K")]
    [InlineData("shrink=16M@1", "shrink: '1' has no unit")]
    [InlineData("shrink=16M@1s,pick=cold", "'pick' does not go with shrink=")]
    public void TryParse_BadSchedule_FailsNamingKeyAndValue(string text, string expected)
    {
        Assert.False(PageOutScheduleParser.TryParse(text, out var schedule, out string error));
        Assert.Null(schedule);
        Assert.Contains(expected, error);
        Assert.DoesNotContain('\n', error);
    }
}
