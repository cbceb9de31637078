using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using Iced.Intel;
using Xunit;
using ToyVmm.Tests.Vm;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cli;

/// <summary>
/// <c>toyvmm run</c> as a user runs it, with --report, --trace, --plot and --stats:
/// the files a real run under host pressure leaves, and what an interrupted run leaves.
/// </summary>
public class RunOutputsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("toyvmm-outputs-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Run_PhasesGuestUnderPressure_WritesReportTraceAndPlots()
    {
        string report = Path.Combine(_dir, "report.json"), trace = Path.Combine(_dir, "trace.json"), plots = Path.Combine(_dir, "plots");
        var (code, stdout, stderr) = Toyvmm.Run(null, "run", GuestFiles.Elf("phases"), "--memory", "16M", "--host-memory", "4M",
            "--vcpus", "2", "--check", "--stats", "--quiet", "--report", report, "--trace", trace, "--plot", plots);
        Assert.True(code == 0, $"status {code}: {stderr}");
        Assert.Contains("phases", stdout);
        Assert.Contains("checker: on, 0 violations", stderr);

        using var r = JsonDocument.Parse(File.ReadAllText(report));
        var root = r.RootElement;
        Assert.Equal(0, root.GetProperty("exitStatus").GetInt32());
        Assert.Equal(2, root.GetProperty("vcpus").GetInt32());
        Assert.True(root.GetProperty("instructions").GetInt64() > 0);
        Assert.Equal("4M", root.GetProperty("settings").GetProperty("hostMemory").GetString());
        var phases = root.GetProperty("phases").EnumerateArray().ToDictionary(p => p.GetProperty("name").GetString()!);
        Assert.Equal(["boot", "fill", "pageout", "verify"], phases.Keys.ToArray());
        // fill zero-fills the pages it touches, verify reads them back from swap.
        Assert.True(Count(phases["fill"], "zeroFill") > 1000);
        Assert.True(Count(phases["verify"], "swapIn") + Count(phases["verify"], "swapCacheHit") > 1000);
        Assert.True(Count(phases["fill"], "zeroFill") > Count(phases["verify"], "zeroFill"));
        // The phases add up to the whole run.
        foreach (var kind in new[] { "present", "zeroFill", "swapCacheHit", "swapIn" })
            Assert.Equal(Count(root, kind), phases.Values.Sum(p => Count(p, kind)));
        Assert.Equal(root.GetProperty("instructions").GetInt64(), phases.Values.Sum(p => p.GetProperty("instructions").GetInt64()));
        Assert.Equal(0, root.GetProperty("checker").GetProperty("violations").GetInt64());

        using var t = JsonDocument.Parse(File.ReadAllText(trace));
        var events = t.RootElement.GetProperty("traceEvents").EnumerateArray().ToList();
        var tracks = events.Where(e => e.GetProperty("ph").GetString() == "M" && e.GetProperty("name").GetString() == "thread_name")
            .Select(e => e.GetProperty("args").GetProperty("name").GetString()).ToHashSet();
        Assert.Contains("vCPU 0", tracks);
        Assert.Contains("vCPU 1", tracks);
        Assert.Contains("reclaimer", tracks);
        Assert.Contains(events, e => e.GetProperty("ph").GetString() == "X");
        Assert.Contains(events, e => e.GetProperty("ph").GetString() == "C");

        foreach (var png in new[] { "latency.png", "timeline.png" })
        {
            byte[] bytes = File.ReadAllBytes(Path.Combine(plots, png));
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
        }
    }

    [Fact]
    public void Run_WithPageOutSchedules_ReportCountsEachPickAndTheShrink()
    {
        string report = Path.Combine(_dir, "schedules.json");
        var (code, _, stderr) = Toyvmm.Run(null, "run", GuestFiles.Elf("memhot"), "--host-memory", "32M", "--check", "--quiet",
            "--pageout", "every=2ms,pages=16,pick=cold", "--pageout", "shrink=1M@0ms", "--report", report);
        Assert.True(code == 0, $"status {code}: {stderr}");
        using var r = JsonDocument.Parse(File.ReadAllText(report));
        var other = r.RootElement.GetProperty("host").GetProperty("other");
        long cold = other.GetProperty("pagesForcedOutCold").GetInt64();
        Assert.True(cold > 0);
        Assert.Equal(cold, other.GetProperty("pagesForcedOut").GetInt64());   // the only pick that ran
        Assert.False(other.TryGetProperty("pagesForcedOutRandom", out _));
        Assert.Equal(256, other.GetProperty("shrinkFramesRequested").GetInt64());   // 1M of 4K frames
        Assert.Equal("every=2ms,pages=16,pick=cold; shrink=1M@0s", r.RootElement.GetProperty("settings").GetProperty("pageout").GetString());
        Assert.Equal(0, r.RootElement.GetProperty("checker").GetProperty("violations").GetInt64());
    }

    [Fact]
    public void Run_InterruptedBySigint_StillWritesItsReport()
    {
        if (!OperatingSystem.IsLinux()) return;
        string guest = Path.Combine(_dir, "spin.elf");
        File.WriteAllBytes(guest, AsmGuest.Build(a =>
        {
            a.Print("running\n");
            var loop = a.CreateLabel();
            a.Label(ref loop);
            a.inc(rax);
            a.jmp(loop);
        }).File);
        string report = Path.Combine(_dir, "interrupted.json");
        var (code, _, stderr) = Toyvmm.Run("running\n", "run", guest, "--report", report);
        Assert.Equal(130, code);
        Assert.Contains("interrupt", stderr, StringComparison.OrdinalIgnoreCase);
        using var r = JsonDocument.Parse(File.ReadAllText(report));
        Assert.Equal(130, r.RootElement.GetProperty("exitStatus").GetInt32());
        Assert.Equal("Interrupted", r.RootElement.GetProperty("outcome").GetString());
        Assert.True(r.RootElement.GetProperty("instructions").GetInt64() > 0);
    }

    private static long Count(JsonElement section, string kind) =>
        section.GetProperty("faults").GetProperty(kind).GetProperty("count").GetInt64();

    /// <summary>The toyvmm program in a child process.</summary>
    internal static class Toyvmm
    {
        [DllImport("libc", SetLastError = true)]
        private static extern int kill(int pid, int sig);
        private const int Sigint = 2;

        /// <param name="interruptAfter">When not null: send SIGINT once standard output holds this text.</param>
        public static (int Code, string Stdout, string Stderr) Run(string? interruptAfter, params string[] args)
        {
            var psi = ToyvmmProcess.StartInfo(args);
            using var p = Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync();
            var stdout = new System.Text.StringBuilder();
            var reader = Task.Run(() =>
            {
                var buffer = new char[4096];
                int n;
                bool sent = false;
                while ((n = p.StandardOutput.Read(buffer, 0, buffer.Length)) > 0)
                {
                    lock (stdout) stdout.Append(buffer, 0, n);
                    if (!sent && interruptAfter is not null && stdout.ToString().Contains(interruptAfter))
                    {
                        sent = true;
                        kill(p.Id, Sigint);
                    }
                }
            });
            if (!p.WaitForExit(TimeSpan.FromMinutes(2)))
            {
                p.Kill(entireProcessTree: true);
                throw new Xunit.Sdk.XunitException($"toyvmm {string.Join(' ', args)} did not end");
            }
            p.WaitForExit();
            reader.Wait(TimeSpan.FromMinutes(1));
            lock (stdout) return (p.ExitCode, stdout.ToString(), stderr.Result);
        }
    }
}
