using ToyVmm.Cli;
using Xunit;

namespace ToyVmm.Tests.Cli;

public class DurationParserTests
{
    [Theory]
    [InlineData("5ms", 5 * TimeSpan.TicksPerMillisecond)]
    [InlineData("2s", 2 * TimeSpan.TicksPerSecond)]
    [InlineData("1.5s", 15 * TimeSpan.TicksPerSecond / 10)]
    [InlineData("250us", 250 * TimeSpan.TicksPerMicrosecond)]
    [InlineData("0.5us", 5)]
    [InlineData("3MS", 3 * TimeSpan.TicksPerMillisecond)]
    [InlineData("0s", 0)]
    public void TryParse_NumberWithUnit_ReturnsDuration(string text, long ticks)
    {
        Assert.True(DurationParser.TryParse(text, out var d, out string error), error);
        Assert.Equal(ticks, d.Ticks);
    }

    [Theory]
    [InlineData("5", "has no unit (write e.g. 5ms, 5s or 5us)")]
    [InlineData("", "is not a duration")]
    [InlineData("ms", "is not a duration")]
    [InlineData("5 min", "is not a duration")]
    [InlineData("1.2.3s", "is not a duration")]
    [InlineData("-1s", "is not a duration")]
    [InlineData("2days", "is not a duration")]
    [InlineData("25h", "is not a duration")]
    [InlineData("90000s", "longer than a day")]
    [InlineData("0.01us", "finer than 0.1us")]
    public void TryParse_BadDuration_FailsNamingIt(string text, string expected)
    {
        Assert.False(DurationParser.TryParse(text, out _, out string error));
        Assert.Contains(expected, error);
        Assert.Contains($"'{text}'", error);
    }

    [Theory]
    [InlineData("2s")]
    [InlineData("5ms")]
    [InlineData("250us")]
    [InlineData("1500ms")]
    public void Format_WholeUnits_RoundTrips(string text)
    {
        Assert.True(DurationParser.TryParse(text, out var d, out _));
        Assert.Equal(text, DurationParser.Format(d));
    }
}
