using ToyVmm.Cli;
using Xunit;

namespace ToyVmm.Tests.Cli;

public class TypoSuggesterTests
{
    private static readonly string[] Options = ["--memory", "--vcpus", "--host-memory", "--pageout", "--pageout-interval", "--check", "--stats", "--seed", "--trace", "--trace-limit"];

    [Theory]
    [InlineData("--memroy", "--memory")]     // adjacent swap: one edit
    [InlineData("--memorry", "--memory")]
    [InlineData("--vcpu", "--vcpus")]
    [InlineData("--cpus", "--vcpus")]
    [InlineData("--hostmemory", "--host-memory")]
    [InlineData("--pageout-intervall", "--pageout-interval")]
    [InlineData("--MEMORY", "--memory")]
    [InlineData("--chek", "--check")]
    [InlineData("--trace-lim", "--trace-limit")]   // a prefix of exactly one name
    public void Suggest_CloseTypo_ReturnsTheOption(string typed, string expected)
    {
        Assert.Equal(expected, TypoSuggester.Suggest(typed, Options));
    }

    [Theory]
    [InlineData("--fast")]
    [InlineData("--x")]
    [InlineData("--completely-different")]
    [InlineData("--")]
    public void Suggest_NothingClose_ReturnsNull(string typed)
    {
        Assert.Null(TypoSuggester.Suggest(typed, Options));
    }

    [Fact]
    public void Suggest_Verb_FindsRun()
    {
        Assert.Equal("run", TypoSuggester.Suggest("rnu", ["run", "version", "help"]));
        Assert.Equal("version", TypoSuggester.Suggest("verison", ["run", "version", "help"]));
    }

    [Theory]
    [InlineData("", "", 0)]
    [InlineData("abc", "abc", 0)]
    [InlineData("abc", "acb", 1)]
    [InlineData("kitten", "sitting", 3)]
    [InlineData("", "abc", 3)]
    public void Distance_KnownPairs(string a, string b, int expected)
    {
        Assert.Equal(expected, TypoSuggester.Distance(a, b));
        Assert.Equal(expected, TypoSuggester.Distance(b, a));
    }
}
