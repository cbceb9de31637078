using System.Diagnostics;
using ToyVmm.Cli;
using ToyVmm.Mmu.Notifiers;
using Xunit;
using Xunit.Abstractions;

namespace ToyVmm.Tests.Cli;

/// <summary>
/// <c>--notifier-protocol pin</c> and <c>none</c> end the way docs/DESIGN.md "Why notifiers
/// exist" says, every time: the runs are deterministic (one vCPU, a fixed seed, the page-outs
/// the pageout guest asks for itself, small pools), so each ends the same way on any machine.
/// </summary>
public class NotifierlessModeTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("toyvmm-notifierless-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Runs the toyvmm program (its messages go to standard error, as a user sees them) in an empty folder.</summary>
    private Task<(int Code, string Messages, string Console)> Run(params string[] args) => Task.Run(() =>
    {
        var psi = ToyvmmProcess.StartInfo(["run", .. args, "--quiet", "--seed", "1"]);
        psi.WorkingDirectory = _dir;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            p.Kill(entireProcessTree: true);
            throw new Xunit.Sdk.XunitException($"toyvmm {string.Join(' ', args)} did not end");
        }
        p.WaitForExit();
        output.WriteLine($"exit {p.ExitCode}\n{stdout.Result}\n{stderr.Result}");
        return (p.ExitCode, stderr.Result, stdout.Result);
    });

    /// <summary>The value of one row of the end-of-run table (<c>--stats</c>).</summary>
    private static long Stat(string messages, string row)
    {
        var line = messages.Split('\n').First(l => l.TrimStart().StartsWith(row + " ", StringComparison.Ordinal));
        return long.Parse(line[(line.TrimEnd().LastIndexOf(' ') + 1)..].Trim().Replace(",", ""));
    }

    [Fact]
    public async Task Pin_WorkingSetLargerThanTheHostPool_ExitsFiveNamingThePinnedFrames()
    {
        // memseq touches half of 16M (2048 pages); the pool has 1024 frames, all of them soon pinned.
        var (code, messages, _) = await Run(GuestFiles.Elf("memseq"), "--memory", "16M", "--host-memory", "4M",
            "--notifier-protocol", "pin", "--stats");
        Assert.Equal(ExitCodes.HostFailure, code);
        Assert.Contains("out of host memory: no frame to reclaim", messages);
        Assert.Contains("frames pinned by the secondary MMU", messages);
        Assert.Contains("unswappable memlock leak", messages);
        Assert.True(Stat(messages, "pinned frames") > 900, "nearly every frame is pinned");
        Assert.True(Stat(messages, "reclaim scans failed") > 0);
        Assert.True(Stat(messages, "reclaim busy") > 0);
        Assert.Equal(0, Stat(messages, "reclaim freed"));
    }

    [Fact]
    public async Task Pin_WorkingSetFitsTheHostPool_RunsToTheEndWithNoViolation()
    {
        var (code, messages, console) = await Run(GuestFiles.Elf("memseq"), "--memory", "16M",
            "--notifier-protocol", "pin", "--check", "--stats");
        Assert.Equal(0, code);
        Assert.Contains("memseq: PASS", console);
        Assert.True(Stat(messages, "pinned frames") >= 2048, "every page the guest touched is pinned");
        Assert.Contains("checker: on, 0 violations", messages);
    }

    [Fact]
    public async Task Pin_PageOutOfPinnedPages_PagesNothingOutAndTheGuestPasses()
    {
        var (code, messages, console) = await Run(GuestFiles.Elf("pageout"), "--memory", "16M",
            "--notifier-protocol", "pin", "--check", "--stats");
        Assert.Equal(0, code);
        Assert.Contains("pageout: PASS", console);
        Assert.Equal(0, Stat(messages, "pages written to swap"));
        Assert.True(Stat(messages, "reclaim busy") >= 1024, "every page the guest asked out was found pinned");
    }

    [Fact]
    public async Task None_WithChecker_ExitsSevenNamingTheFrameTheGuestPageAndTheEvents()
    {
        var (code, messages, _) = await Run(GuestFiles.Elf("pageout"), "--memory", "16M",
            "--notifier-protocol", "none", "--check");
        Assert.Equal(ExitCodes.InvariantViolation, code);
        Assert.Contains("a host frame was freed while a secondary entry still maps it", messages);
        Assert.Matches(@"host frame:\s+hfn:0x[0-9a-f]+", messages);
        Assert.Matches(@"guest page:\s+gpa:0x[0-9a-f]+", messages);
        Assert.Matches(@"Install\s+hfn:0x[0-9a-f]+\s+gpa:0x", messages);
        Assert.Contains("FrameFree", messages);
    }

    [Fact]
    public async Task None_WithoutChecker_TheGuestReadsAnotherPagesDataAndFails()
    {
        var (code, _, console) = await Run(GuestFiles.Elf("pageout"), "--memory", "16M", "--notifier-protocol", "none");
        Assert.Equal(1, code);   // the guest's own failure status
        Assert.Contains("paged-out contents kept beside fresh pages: FAIL", console);
        Assert.Contains("memory corruption", console);
        Assert.Contains("pageout: FAIL", console);
    }

    [Theory]
    [InlineData("sequence")]
    [InlineData("broken-2008")]
    public async Task Notifiers_SameGuest_ContentsKept(string protocol)
    {
        var (code, _, console) = await Run(GuestFiles.Elf("pageout"), "--memory", "16M", "--notifier-protocol", protocol, "--check");
        Assert.Equal(0, code);
        Assert.Contains("paged-out contents kept beside fresh pages: ok", console);
    }

    [Fact]
    public void Settings_EveryProtocol_ReportedByItsCommandLineName()
    {
        foreach (var kind in Enum.GetValues<NotifierProtocol>())
        {
            var settings = RunOutputs.Settings(new RunOptions { GuestPath = "g.elf", Protocol = kind });
            Assert.Equal(NotifierProtocols.NameOf(kind), settings.Single(s => s.Key == "notifierProtocol").Value);
        }
    }
}
