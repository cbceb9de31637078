using ToyVmm.Bench.Scenario;
using Xunit;

namespace ToyVmm.Tests.Bench;

/// <summary>The cpusuite benchmark's arguments, medians and table (bench/Scenario/CpuSuiteTable.cs).</summary>
public class CpuSuiteTableTests
{
    [Fact]
    public void TryParse_NoArguments_DefaultRunsAndBothCpusuiteGuests()
    {
        Assert.True(CpuSuiteArgs.TryParse([], out var a, out var error));
        Assert.Null(error);
        Assert.Equal(CpuSuiteArgs.DefaultRuns, a.Runs);
        Assert.Equal(["cpusuite", "cpusuite-sse"], a.Guests);
    }

    [Fact]
    public void TryParse_RunsThenGuests_TakesBoth()
    {
        Assert.True(CpuSuiteArgs.TryParse(["7", "cpusuite", "kernel"], out var a, out _));
        Assert.Equal(7, a.Runs);
        Assert.Equal(["cpusuite", "kernel"], a.Guests);
    }

    [Fact]
    public void TryParse_GuestsOnly_DefaultRuns()
    {
        Assert.True(CpuSuiteArgs.TryParse(["cpusuite-sse"], out var a, out _));
        Assert.Equal(CpuSuiteArgs.DefaultRuns, a.Runs);
        Assert.Equal(["cpusuite-sse"], a.Guests);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-3")]
    [InlineData("+3")]
    [InlineData("5x")]
    [InlineData("1001")]
    [InlineData("99999999999")]
    public void TryParse_BadRunCount_OneLineError(string runs)
    {
        Assert.False(CpuSuiteArgs.TryParse([runs], out _, out var error));
        Assert.NotNull(error);
        Assert.Contains(runs, error);
        Assert.DoesNotContain('\n', error);
    }

    [Theory]
    [InlineData("../cpusuite")]
    [InlineData("guest/build/cpusuite.elf")]
    [InlineData("")]
    [InlineData("-v")]
    public void TryParse_NotAGuestName_OneLineError(string guest)
    {
        Assert.False(CpuSuiteArgs.TryParse(["3", guest], out _, out var error));
        Assert.NotNull(error);
        Assert.DoesNotContain('\n', error);
    }

    [Fact]
    public void Median_OddAndEvenCounts_MiddleOrMeanOfMiddleTwo()
    {
        var odd = CpuSuiteTable.Median("x", [new(3, 30), new(1, 10), new(2, 20)]);
        Assert.Equal(2, odd.WallSeconds);
        Assert.Equal(20, odd.CpuSeconds);
        var even = CpuSuiteTable.Median("x", [new(4, 1), new(1, 4), new(2, 3), new(3, 2)]);
        Assert.Equal(2.5, even.WallSeconds);
        Assert.Equal(2.5, even.CpuSeconds);
    }

    [Fact]
    public void Median_NoRuns_Throws() =>
        Assert.Throws<ArgumentException>(() => CpuSuiteTable.Median("native", []));

    private static List<CpuSuiteRow> Rows(bool withQemu)
    {
        var rows = new List<CpuSuiteRow> { new(CpuSuiteTable.Native, 0.010, 0.010) };
        if (withQemu) rows.Add(new(CpuSuiteTable.Qemu, 0.050, 0.050));
        rows.Add(new(CpuSuiteTable.Vm(false, "flat"), 0.400, 0.500));
        rows.Add(new(CpuSuiteTable.Vm(true, "flat"), 0.200, 0.400));
        rows.Add(new(CpuSuiteTable.Vm(false, "EPT"), 0.500, 0.500));
        rows.Add(new(CpuSuiteTable.Vm(true, "EPT+pressure"), 0.250, 0.500));
        return rows;
    }

    [Fact]
    public void Format_WithQemu_MipsOnBothClocksAndRatiosToNativeAndQemu()
    {
        var lines = CpuSuiteTable.Format("cpusuite", 100_000_000, 5, Rows(withQemu: true));
        Assert.StartsWith("cpusuite: 100.0 M guest instructions; medians of 5", lines[0]);
        Assert.Contains("x qemu-user", lines[1]);
        string interp = lines.Single(l => l.Contains("interpreter, flat"));
        // 100 M instructions in 0.4 s wall / 0.5 s CPU: 250 | 200 MIPS; 40x | 50x native; 8x | 10x qemu-user.
        Assert.Matches(@"400\.0 \|\s+500\.0\s+250 \|\s+200\s+40\.0 \| 50\.0\s+8\.0 \| 10\.0$", interp);
        string native = lines.Single(l => l.TrimStart().StartsWith("native"));
        Assert.Matches(@"10000 \|\s+10000\s+1\.0 \| 1\.0\s+0\.2 \| 0\.2$", native);
        Assert.Equal(2 + 6, lines.Count);
    }

    [Fact]
    public void Format_WithoutQemu_QemuColumnIsADash()
    {
        var lines = CpuSuiteTable.Format("cpusuite", 100_000_000, 3, Rows(withQemu: false));
        string tiered = lines.Single(l => l.Contains("tiered, flat"));
        Assert.EndsWith("-", tiered);
        Assert.Contains("20.0 | 40.0", tiered);
        Assert.DoesNotContain(lines, l => l.TrimStart().StartsWith(CpuSuiteTable.Qemu));
    }

    [Fact]
    public void Ratios_PresentPairsOnly_TieredOverInterpreterAndShareOfFlat()
    {
        var lines = CpuSuiteTable.Ratios(Rows(withQemu: true));
        // Tiered over interpreter: only flat has both (0.4/0.2 wall, 0.5/0.4 CPU).
        Assert.Equal("  tiered/interpreter MIPS: flat 2.00x | 1.25x", lines[0]);
        // Interpreter on EPT: 0.4/0.5 = 80 % wall, 100 % CPU; no EPT+pressure row for it.
        Assert.Contains(lines, l => l.StartsWith("  interpreter MIPS as a share of flat memory: EPT 80") && !l.Contains("EPT+pressure"));
        // Tiered under pressure: 0.2/0.25 = 80 % wall, 0.4/0.5 = 80 % CPU; no EPT row for it.
        Assert.Contains(lines, l => l.StartsWith("  tiered MIPS as a share of flat memory: EPT+pressure 80"));
        Assert.Equal(3, lines.Count);
    }

    [Fact]
    public void Ratios_NoFlatRows_NoLines() =>
        Assert.Empty(CpuSuiteTable.Ratios([new(CpuSuiteTable.Native, 1, 1), new(CpuSuiteTable.Vm(false, "EPT"), 2, 2)]));

    [Fact]
    public void FirstInstruction_MedianInMilliseconds()
    {
        string line = CpuSuiteTable.FirstInstruction("hello", "interpreter", [3.0, 1.0, 2.0]);
        Assert.Equal("time to first instruction (hello, whole run, interpreter): 2.00 ms median of 3", line);
    }
}
