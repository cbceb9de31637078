using System.Buffers.Binary;
using ToyVmm.Report;
using Xunit;
using static ToyVmm.Tests.Report.SyntheticSnapshots;

namespace ToyVmm.Tests.Report;

public class PlotsTests
{
    private static readonly byte[] PngSignature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    private static void AssertPng(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        Assert.True(bytes.Length > 20_000, $"{path}: only {bytes.Length} bytes");
        Assert.Equal(PngSignature, bytes[..8]);
        Assert.Equal("IHDR", System.Text.Encoding.ASCII.GetString(bytes, 12, 4));
        Assert.Equal(Plots.Width, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)));
        Assert.Equal(Plots.Height, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)));
    }

    private static string Subtitle() => EndOfRunTable.SettingsLine(RunReport.Build(TwoPhases(), Facts()).Settings);

    [Fact]
    public void Write_SnapshotWithTrace_TwoValidPngs()
    {
        string dir = Directory.CreateTempSubdirectory("toyvmm-plots").FullName;
        try
        {
            var written = Plots.Write(TwoPhases(SyntheticTraces.Hundred()), dir, "memhot.elf", Subtitle());
            Assert.Equal([Path.Combine(dir, "latency.png"), Path.Combine(dir, "timeline.png")], written);
            foreach (var path in written) AssertPng(path);
            Assert.Equal(2, Directory.GetFiles(dir).Length);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Write_SnapshotWithoutTrace_TimelineFromPhases()
    {
        string dir = Directory.CreateTempSubdirectory("toyvmm-plots").FullName;
        try
        {
            var written = Plots.Write(TwoPhases(), dir, "memhot.elf", Subtitle());
            foreach (var path in written) AssertPng(path);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Write_EmptyRun_StillDrawsBothFiles()
    {
        string dir = Directory.CreateTempSubdirectory("toyvmm-plots").FullName;
        try
        {
            foreach (var path in Plots.Write(SyntheticSnapshots.Empty(), dir, "hello.elf")) Assert.True(new FileInfo(path).Length > 1000);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Write_DirIsAFile_IOExceptionNamingIt()
    {
        string file = Path.GetTempFileName();
        try
        {
            var ex = Assert.Throws<IOException>(() => Plots.Write(TwoPhases(), file, "x"));
            Assert.Contains(file, ex.Message);
        }
        finally { File.Delete(file); }
    }

    [Fact]
    public void FromTrace_HundredMilliseconds_TenMillisecondBuckets()
    {
        var s = TimelineSeries.FromTrace(SyntheticTraces.Hundred());
        Assert.True(s.FromTimeline);
        Assert.Equal(s.Faults.Length + 1, s.Edges.Length);
        Assert.InRange(s.Faults.Length, 10, 11);
        // Both vCPUs fault every 50 µs between them: 200 per 10 ms.
        Assert.All(s.Faults.Take(10), f => Assert.Equal(200, f));
        // Two page-out batches of 64 pages and two reclaim + two page-out invalidations per 10 ms.
        Assert.All(s.PagesPagedOut.Take(10), p => Assert.Equal(128, p));
        Assert.All(s.Invalidations.Take(10), n => Assert.Equal(4, n));
        Assert.Equal(2000, s.Faults.Sum());
        Assert.Equal(101, s.FreeFrames.Length);
        Assert.Equal([("boot", 0.0), ("work", 0.02)], s.Phases.Select(p => (p.Name, Math.Round(p.Seconds, 6))));
    }

    [Fact]
    public void FromPhases_NoTrace_OneAveragePerPhase()
    {
        var s = TimelineSeries.FromPhases(TwoPhases().Phases);
        Assert.False(s.FromTimeline);
        Assert.Equal([0, 0.5, 3.0], s.Edges);
        // boot: 103 faults in 0.5 s = 2.06 per 10 ms; work: 1260 in 2.5 s = 5.04 per 10 ms.
        Assert.Equal(2.06, s.Faults[0], 6);
        Assert.Equal(5.04, s.Faults[1], 6);
        Assert.Equal(7_680 * 0.01 / 2.5, s.PagesPagedOut[1], 6);
        Assert.Empty(s.FreeFrames);
    }

    [Fact]
    public void Heading_LongSettings_WrappedUnderTheTitle()
    {
        string heading = Plots.Heading("memhot.elf", string.Join(' ', Enumerable.Range(0, 40).Select(i => $"option{i}=value")));
        var lines = heading.Split('\n');
        Assert.Equal("memhot.elf", lines[0]);
        Assert.True(lines.Length >= 3);
        Assert.All(lines.Skip(1), l => Assert.True(l.Length <= 110, l));
    }
}
