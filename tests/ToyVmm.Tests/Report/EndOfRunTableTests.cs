using ToyVmm.Report;
using Xunit;
using Xunit.Abstractions;
using static ToyVmm.Tests.Report.SyntheticSnapshots;

namespace ToyVmm.Tests.Report;

public class EndOfRunTableTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(0, "0 ns")]
    [InlineData(152, "152 ns")]
    [InlineData(999, "999 ns")]
    [InlineData(1_000, "1.0 µs")]
    [InlineData(3_400, "3.4 µs")]
    [InlineData(9_960, "10 µs")]
    [InlineData(12_345, "12 µs")]
    [InlineData(152_000, "152 µs")]
    [InlineData(999_700, "1.0 ms")]
    [InlineData(12_000_000, "12 ms")]
    [InlineData(2_500_000_000, "2.5 s")]
    public void Duration_AnyMagnitude_UnitThatReadsBest(long ns, string expected) =>
        Assert.Equal(expected, Units.Duration(ns));

    [Theory]
    [InlineData(640, "640")]
    [InlineData(12_300, "12.3k")]
    [InlineData(1_200, "1.2k")]
    [InlineData(412_000, "412k")]
    [InlineData(4_100_000, "4.1M")]
    public void Short_Rates_CompactForm(double n, string expected) => Assert.Equal(expected, Units.Short(n));

    [Fact]
    public void Render_TwoPhaseRun_HeadlineSettingsAndEveryKind()
    {
        string text = EndOfRunTable.Render(RunReport.Build(TwoPhases(), Facts()));
        output.WriteLine(text);
        Assert.Contains("guest/build/memhot.elf: 2 vCPUs, 32,000,000 instructions in 3.0 s (10.7 MIPS), exit status 0 (AllHalted)", text);
        Assert.Contains("settings: memory=64M vcpus=2 host-memory=16M pageout=every=5ms,pages=64,pick=random check=true seed=42", text);
        foreach (var row in new[] { "host page present", "zero-fill", "swap-cache hit", "swap-in", "reclaim", "page-out", "discard", "unmap",
                     "pages written to swap", "pages read back from swap", "TLB shootdowns", "checker: on, 0 violations", "shadow syncs",
                     "shadow MMU", "guest page-table writes trapped", "roots cached" })
            Assert.Contains(row, text);
        // No invalidation was caused by protect or teardown: those rows are left out.
        Assert.DoesNotContain("protect", text);
        Assert.DoesNotContain("teardown", text);
        // Two phases: one line each.
        Assert.Single(text.Split('\n'), l => l.StartsWith("  boot ", StringComparison.Ordinal));
        Assert.Single(text.Split('\n'), l => l.StartsWith("  work ", StringComparison.Ordinal));
    }

    [Fact]
    public void Render_LatencyRows_ColumnsEndAtTheSamePlace()
    {
        string text = EndOfRunTable.Render(RunReport.Build(TwoPhases(), Facts()));
        var lines = text.Split('\n');
        int header = Array.FindIndex(lines, l => l.StartsWith("secondary faults", StringComparison.Ordinal));
        var block = lines.Skip(header).TakeWhile(l => l.Length > 0).ToList();
        // Every row of 7 cells (the fault kinds with samples, and the header) has the same length,
        // and the header's "max" ends where each row's max value ends.
        var full = block.Where(l => l.Contains(" ns") || l.Contains(" µs") || l.Contains(" ms") || l.StartsWith("secondary")).Take(5).ToList();
        Assert.True(full.Count >= 4, string.Join("\n", block));
        int end = full[0].Length;
        Assert.All(full, l => Assert.Equal(end, l.Length));
        int p50Column = full[0].IndexOf("p50", StringComparison.Ordinal) + 3;
        Assert.All(full.Skip(1), l => Assert.Equal(' ', l[p50Column]));
        Assert.All(full.Skip(1), l => Assert.NotEqual(' ', l[p50Column - 1]));
    }

    [Fact]
    public void Render_EmptyRun_KindsShownAsNoneAndNoPhaseTable()
    {
        var facts = Facts(host: false) with { Checker = CheckerFacts.Off };
        string text = EndOfRunTable.Render(RunReport.Build(SyntheticSnapshots.Empty(), facts));
        output.WriteLine(text);
        var swapIn = text.Split('\n').Single(l => l.StartsWith("  swap-in", StringComparison.Ordinal));
        Assert.EndsWith("none", swapIn);
        Assert.Contains("checker: off", text);
        Assert.DoesNotContain("TLB shootdowns", text);
        Assert.DoesNotContain("phase", text);
        Assert.DoesNotContain("pages written to swap", text);
    }
}
