using System.Text.Json;
using Iced.Intel;
using Xunit;
using ToyVmm.Tests.Loader;
using ToyVmm.Tests.Vm;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cli;

/// <summary>
/// <c>toyvmm run a.elf b.elf ...</c> as a user runs it (GUEST-ABI 1.1 "Several VMs on
/// one host"): console lines prefixed per VM, the exit-status rule, each VM's figures
/// apart in the report, the table and the trace; and two VMs sharing a grant under
/// host pressure with the checker on.
/// </summary>
public class SeveralVmsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("toyvmm-vms-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A guest that prints <paramref name="text"/> (no newline added) and exits with <paramref name="status"/>.</summary>
    private string Guest(string name, string text, byte status)
    {
        var a = new Assembler(64);
        a.Print(text);
        a.Exit(status);
        var writer = new Bytes();
        a.Assemble(writer, AsmGuest.Code);
        var b = new ElfBuilder { Payload = writer.ToArray() };
        b.Phdrs[0].Flags = 7;
        b.Phdrs[0].Filesz = b.Phdrs[0].Memsz = (ulong)writer.ToArray().Length;
        string path = Path.Combine(_dir, name + ".elf");
        File.WriteAllBytes(path, b.Build());
        return path;
    }

    private sealed class Bytes : CodeWriter
    {
        private readonly List<byte> _bytes = [];
        public override void WriteByte(byte value) => _bytes.Add(value);
        public byte[] ToArray() => [.. _bytes];
    }

    private static (int Code, string Stdout, string Stderr) Run(params string[] args) =>
        RunOutputsTests.Toyvmm.Run(null, ["run", .. args, "--memory", "4M", "--quiet"]);

    [Fact]
    public void Run_TwoVms_EveryLinePrefixedAndAnUnfinishedLineFinished()
    {
        var (code, stdout, stderr) = Run(Guest("a", "one\ntwo\n", 0), Guest("b", "three\nfour", 0));
        Assert.True(code == 0, $"status {code}: {stderr}");
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["vm0: one", "vm0: two"], lines.Where(l => l.StartsWith("vm0: ", StringComparison.Ordinal)));
        Assert.Equal(["vm1: three", "vm1: four"], lines.Where(l => l.StartsWith("vm1: ", StringComparison.Ordinal)));
        Assert.Equal(4, lines.Length);
        Assert.EndsWith("\n", stdout);
        Assert.Equal("", stderr);
    }

    [Fact]
    public void Run_OneVm_PrintsWithoutAPrefixAsAlways()
    {
        var (code, stdout, _) = Run(Guest("a", "alone\n", 0));
        Assert.Equal(0, code);
        Assert.Equal("alone\n", stdout);
    }

    [Theory]
    [InlineData(new byte[] { 0, 0, 0 }, 0)]
    [InlineData(new byte[] { 0, 3, 5 }, 3)]
    [InlineData(new byte[] { 0, 5, 3 }, 5)]
    [InlineData(new byte[] { 9, 0, 3 }, 9)]
    public void Run_ThreeVms_StatusIsTheLowestNumberedVmThatDidNotEndWithZero(byte[] statuses, int expected)
    {
        var guests = statuses.Select((s, i) => Guest($"g{i}", $"vm says {s}\n", s)).ToArray();
        var (code, stdout, stderr) = Run(guests);
        Assert.True(code == expected, $"status {code}, wanted {expected}: {stderr}");
        for (int i = 0; i < statuses.Length; i++) Assert.Contains($"vm{i}: vm says {statuses[i]}\n", stdout);
    }

    [Fact]
    public void Run_ThreeVms_ReportTableAndTraceKeepEachVmApart()
    {
        string report = Path.Combine(_dir, "r.json"), trace = Path.Combine(_dir, "t.json");
        var guests = new[] { GuestFiles.Elf("hello"), GuestFiles.Elf("pageout"), Guest("seven", "bye\n", 7) };
        var (code, _, stderr) = RunOutputsTests.Toyvmm.Run(null, ["run", .. guests, "--memory", "16M", "--host-memory", "12M",
            "--quiet", "--stats", "--check", "--report", report, "--trace", trace]);
        Assert.True(code == 7, $"status {code}: {stderr}");

        using var r = JsonDocument.Parse(File.ReadAllText(report));
        var root = r.RootElement;
        Assert.Equal(7, root.GetProperty("exitStatus").GetInt32());
        Assert.True(root.TryGetProperty("host", out _));
        var vms = root.GetProperty("vms").EnumerateArray().ToList();
        Assert.Equal(3, vms.Count);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(i, vms[i].GetProperty("vm").GetInt32());
            Assert.Equal(guests[i], vms[i].GetProperty("guest").GetString());
            Assert.False(vms[i].TryGetProperty("host", out _), "the host is the whole run's, at the top");
            Assert.False(vms[i].TryGetProperty("vms", out _));
        }
        Assert.Equal([0, 0, 7], vms.Select(v => v.GetProperty("exitStatus").GetInt32()));
        Assert.Equal(vms.Sum(v => v.GetProperty("instructions").GetInt64()), root.GetProperty("instructions").GetInt64());
        // pageout pages its own RAM out and back: its swap-ins are its own, not hello's.
        long Faults(JsonElement e, string kind) => e.GetProperty("faults").GetProperty(kind).GetProperty("count").GetInt64();
        Assert.True(Faults(vms[1], "swapIn") + Faults(vms[1], "swapCacheHit") > 0);
        Assert.Equal(0, Faults(vms[0], "swapIn"));
        foreach (var kind in new[] { "present", "zeroFill", "swapCacheHit", "swapIn" })
            Assert.Equal(vms.Sum(v => Faults(v, kind)), Faults(root, kind));

        foreach (var vm in new[] { "vm0", "vm1", "vm2" }) Assert.Contains($"\n{vm}: ", "\n" + stderr.Replace("toyvmm: ", ""));
        Assert.Contains("checker: on, 0 violations", stderr);

        using var t = JsonDocument.Parse(File.ReadAllText(trace));
        var meta = t.RootElement.GetProperty("traceEvents").EnumerateArray()
            .Where(e => e.GetProperty("ph").GetString() == "M").ToList();
        var processes = meta.Where(e => e.GetProperty("name").GetString() == "process_name")
            .ToDictionary(e => e.GetProperty("args").GetProperty("name").GetString()!, e => e.GetProperty("pid").GetInt32());
        Assert.Equal(["vm0", "vm1", "vm2", "host"], processes.Keys);
        Assert.Equal(4, processes.Values.Distinct().Count());
        foreach (var vm in new[] { "vm0", "vm1", "vm2" })
            Assert.Contains(meta, e => e.GetProperty("name").GetString() == "thread_name" && e.GetProperty("pid").GetInt32() == processes[vm]
                                       && e.GetProperty("args").GetProperty("name").GetString() == "vCPU 0");
    }

    [Fact]
    public void Run_SeveralGuestsWithFlatMemory_IsAUsageError()
    {
        var (code, _, stderr) = Run(Guest("a", "", 0), Guest("b", "", 0), "--flat-memory");
        Assert.Equal(2, code);
        Assert.Contains("--flat-memory", stderr);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Run_TwoVmsSharingAGrantUnderHostPressure_DataIntactAndNoViolation(int seed)
    {
        // Host pool a quarter of the two VMs' RAM, forced page-outs of both every 2 ms, checker on.
        string report = Path.Combine(_dir, "g.json");
        var (code, stdout, stderr) = RunOutputsTests.Toyvmm.Run(null, ["run", GuestFiles.Elf("grants"), GuestFiles.Elf("grants-sse"),
            "--memory", "16M", "--host-memory", "8M", "--pageout", "every=2ms,pages=32", "--check", "--quiet",
            "--seed", seed.ToString(), "--report", report]);
        Assert.True(code == 0, $"status {code}: {stderr}\n{stdout}");
        Assert.DoesNotContain("FAIL", stdout);
        // One VM got the key and shared it; the other attached it.
        Assert.Matches(@"vm[01]: grants: owner shares its grant with another VM", stdout);
        Assert.Matches(@"vm[01]: grants: user attached the grant of another VM", stdout);
        Assert.Contains("lock cmpxchg from two VMs counts every increment: ok", stdout);
        using var r = JsonDocument.Parse(File.ReadAllText(report));
        Assert.Equal(0, r.RootElement.GetProperty("checker").GetProperty("violations").GetInt64());
        Assert.True(r.RootElement.GetProperty("host").GetProperty("other").GetProperty("pagesForcedOut").GetInt64() > 0);
    }

    /// <summary>
    /// Rounds of the grant pair beside a memory guest on one host a quarter of their RAM,
    /// page-outs of every pick, checker on: bounded to 8 rounds.
    /// </summary>
    [Fact]
    [Trait("Category", "Long")]
    public void Run_GrantPairBesideAMemoryGuest_ManyRoundsUnderPressure_NoViolationAndDataIntact()
    {
        string[] picks = ["random", "cold", "hot", "sweep"];
        for (int round = 0; round < 8; round++)
        {
            string report = Path.Combine(_dir, $"long{round}.json");
            var (code, stdout, stderr) = RunOutputsTests.Toyvmm.Run(null, ["run", GuestFiles.Elf("grants"), GuestFiles.Elf("grants"),
                GuestFiles.Elf("memrand"), "--memory", "32M", "--host-memory", "24M", "--vcpus", "2",
                "--pageout", $"every=1ms,pages=64,pick={picks[round % 4]}", "--check", "--quiet", "--seed", (round + 10).ToString(),
                "--report", report]);
            Assert.True(code == 0, $"round {round}: status {code}: {stderr}\n{stdout}");
            Assert.DoesNotContain("FAIL", stdout);
            using var r = JsonDocument.Parse(File.ReadAllText(report));
            Assert.Equal(0, r.RootElement.GetProperty("checker").GetProperty("violations").GetInt64());
        }
    }
}
