using System.Text.Json;
using ToyVmm.Report;
using Xunit;

namespace ToyVmm.Tests.Report;

public class TraceFileWriterTests
{
    private static readonly KeyValuePair<string, string>[] Settings = [new("memory", "64M"), new("pageout", "every=5ms,pick=random")];

    private static JsonElement WriteAndParse(Mmu.Metrics.TraceData trace, out TraceWriteResult result)
    {
        var stream = new MemoryStream();
        result = TraceFileWriter.Write(trace, stream, Settings, "toyvmm memhot.elf");
        return JsonDocument.Parse(stream.ToArray()).RootElement;
    }

    private static IEnumerable<JsonElement> Events(JsonElement root) => root.GetProperty("traceEvents").EnumerateArray();

    [Fact]
    public void Write_Timeline_ParsesAsTraceEventObjectFormat()
    {
        var root = WriteAndParse(SyntheticTraces.Hundred(dropped: 12), out var result);
        Assert.Equal("ns", root.GetProperty("displayTimeUnit").GetString());
        Assert.Equal(JsonValueKind.Array, root.GetProperty("traceEvents").ValueKind);
        var other = root.GetProperty("otherData");
        Assert.Equal(12, other.GetProperty("droppedEvents").GetInt64());
        Assert.Equal("memory=64M pageout=every=5ms,pick=random", other.GetProperty("settings").GetString());
        Assert.Equal("64M", other.GetProperty("settings.memory").GetString());
        Assert.All(Events(root), e =>
        {
            Assert.True(e.TryGetProperty("ph", out _));
            Assert.Equal(TraceFileWriter.Pid, e.GetProperty("pid").GetInt32());
        });
        Assert.Equal(2000 + 20 * 6 + 2 + 1, result.Events);
    }

    [Fact]
    public void Write_Timeline_EveryTrackNamed()
    {
        var root = WriteAndParse(SyntheticTraces.Hundred(), out _);
        var names = Events(root)
            .Where(e => e.GetProperty("ph").GetString() == "M" && e.GetProperty("name").GetString() == "thread_name")
            .ToDictionary(e => e.GetProperty("tid").GetInt32(), e => e.GetProperty("args").GetProperty("name").GetString());
        Assert.Equal("vCPU 0", names[SyntheticTraces.Vcpu0]);
        Assert.Equal("vCPU 1", names[SyntheticTraces.Vcpu1]);
        Assert.Equal("reclaimer", names[SyntheticTraces.Reclaimer]);
        Assert.Equal("page-out driver", names[SyntheticTraces.Driver]);
        Assert.Equal("swap I/O", names[SyntheticTraces.SwapIo]);
        Assert.Contains(TraceFileWriter.PhasesTrackName, names.Values);
        Assert.Contains(Events(root), e => e.GetProperty("name").GetString() == "process_name"
            && e.GetProperty("args").GetProperty("name").GetString() == "toyvmm memhot.elf");
    }

    [Fact]
    public void Write_Timeline_SlicesCarryTheirArgs()
    {
        var root = WriteAndParse(SyntheticTraces.Hundred(), out _);
        var slices = Events(root).Where(e => e.GetProperty("ph").GetString() == "X").ToList();
        var swapIn = slices.First(e => e.GetProperty("name").GetString() == "fault: swap-in");
        Assert.Equal("swapIn", swapIn.GetProperty("args").GetProperty("kind").GetString());
        Assert.StartsWith("0x", swapIn.GetProperty("args").GetProperty("gpa").GetString());
        var inval = slices.First(e => e.GetProperty("name").GetString() == "invalidate: page-out");
        Assert.Equal(64, inval.GetProperty("args").GetProperty("pages").GetInt64());
        Assert.Equal("0x7f000000-0x7f03ffff", inval.GetProperty("args").GetProperty("range").GetString());
        Assert.Equal(50.0, inval.GetProperty("dur").GetDouble(), 2);
        var wait = slices.First(e => e.GetProperty("cat").GetString() == "shootdown");
        Assert.Equal("acknowledged", wait.GetProperty("args").GetProperty("step").GetString());
        var phases = slices.Where(e => e.GetProperty("cat").GetString() == "phase").Select(e => e.GetProperty("name").GetString());
        Assert.Equal(["boot", "work"], phases);
        var violation = Assert.Single(Events(root), e => e.GetProperty("ph").GetString() == "i");
        Assert.Equal(1, violation.GetProperty("args").GetProperty("vcpu").GetInt32());
        Assert.Equal(90_000.0, violation.GetProperty("ts").GetDouble(), 1);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Write_Timeline_SlicesNonNegativeAndBalancedPerTrack(bool overlap)
    {
        var root = WriteAndParse(SyntheticTraces.Hundred(overlap), out var result);
        Assert.Equal(overlap ? 1 : 0, result.ClippedSlices);
        var byTrack = Events(root).Where(e => e.GetProperty("ph").GetString() == "X")
            .GroupBy(e => e.GetProperty("tid").GetInt32());
        int tracks = 0;
        foreach (var track in byTrack)
        {
            tracks++;
            // Decimal: the writer's microseconds are exact nanoseconds, so nesting holds exactly.
            var ends = new Stack<decimal>();
            decimal lastTs = decimal.MinValue;
            foreach (var e in track)
            {
                decimal ts = e.GetProperty("ts").GetDecimal(), dur = e.GetProperty("dur").GetDecimal();
                Assert.True(dur >= 0, $"negative dur on track {track.Key}");
                Assert.True(ts >= lastTs, $"track {track.Key} out of order at {ts}");
                lastTs = ts;
                while (ends.Count > 0 && ends.Peek() <= ts) ends.Pop();
                // Inside the enclosing slice, or disjoint: never straddling its end.
                if (ends.Count > 0) Assert.True(ts + dur <= ends.Peek(), $"track {track.Key}: [{ts}, {ts + dur}] straddles {ends.Peek()}");
                ends.Push(ts + dur);
            }
        }
        Assert.Equal(6, tracks);   // 2 vCPUs, reclaimer, driver, swap I/O, phases
    }

    [Fact]
    public void Write_Timeline_CountersForFreeFramesAndResidentPages()
    {
        var root = WriteAndParse(SyntheticTraces.Hundred(), out _);
        var counters = Events(root).Where(e => e.GetProperty("ph").GetString() == "C").ToList();
        var free = counters.Where(e => e.GetProperty("name").GetString() == "free frames").ToList();
        var resident = counters.Where(e => e.GetProperty("name").GetString() == "resident guest pages").ToList();
        Assert.Equal(101, free.Count);
        Assert.Equal(101, resident.Count);
        Assert.Equal(2000, free[0].GetProperty("args").GetProperty("frames").GetInt64());
        Assert.Equal(4000, resident[^1].GetProperty("args").GetProperty("pages").GetInt64());
    }

    [Fact]
    public void Write_EmptyTrace_StillValidWithPhasesTrack()
    {
        var empty = new Mmu.Metrics.TraceData { OriginTicks = 0, Tracks = [], Events = [], Counters = [], PhaseNames = [] };
        var root = WriteAndParse(empty, out var result);
        Assert.Equal(0, result.Events);
        Assert.Contains(Events(root), e => e.GetProperty("ph").GetString() == "M");
    }

    [Fact]
    public void Write_ToPath_AtomicAndParsable()
    {
        string dir = Directory.CreateTempSubdirectory("toyvmm-trace").FullName;
        try
        {
            string path = Path.Combine(dir, "trace.json");
            TraceFileWriter.Write(SyntheticTraces.Hundred(), path, Settings);
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            Assert.True(doc.RootElement.GetProperty("traceEvents").GetArrayLength() > 2000);
            Assert.Single(Directory.GetFiles(dir));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
