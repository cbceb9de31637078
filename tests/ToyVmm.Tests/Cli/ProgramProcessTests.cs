using System.Diagnostics;
using Iced.Intel;
using ToyVmm.Cli;
using ToyVmm.Tests.Vm;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cli;

/// <summary>The toyvmm program as a user runs it: standard output, standard error and exit status.</summary>
public class ProgramProcessTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("toyvmm-proc-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Guest(string name, Action<Assembler> emit)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, AsmGuest.Build(emit).File);
        return path;
    }

    private static (int Code, string Stdout, string Stderr) Toyvmm(params string[] args) => ToyvmmIn(null, null, args);

    /// <summary>Runs toyvmm in <paramref name="workingDirectory"/> with <paramref name="variables"/> added to its environment.</summary>
    private static (int Code, string Stdout, string Stderr) ToyvmmIn(string? workingDirectory, Dictionary<string, string>? variables, params string[] args)
    {
        var psi = ToyvmmProcess.StartInfo(args);
        if (workingDirectory != null) psi.WorkingDirectory = workingDirectory;
        foreach (var (name, value) in variables ?? []) psi.Environment[name] = value;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            p.Kill(entireProcessTree: true);
            throw new Xunit.Sdk.XunitException($"toyvmm {string.Join(' ', args)} did not end");
        }
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void Run_HelloGuest_ConsoleOnStdoutNothingOnStderrStatusZero()
    {
        string g = Guest("hello.elf", a => { a.Print("hello, world\n"); a.hlt(); });
        var (code, stdout, stderr) = Toyvmm("run", g);
        Assert.Equal("", stderr);
        Assert.Equal("hello, world\n", stdout);
        Assert.Equal(0, code);
    }

    [Fact]
    public void Run_ExitPort_IsTheExitStatus()
    {
        string g = Guest("exit.elf", a => { a.Print("partial"); a.Exit(57); });
        var (code, stdout, stderr) = Toyvmm("run", g, "--vcpus", "2", "--memory", "16M");
        Assert.Equal(57, code);
        // The vCPU that exits printed all of "partial" first; the other one may have
        // printed some of it too, byte by byte, interleaved with it.
        Assert.True(IsSubsequence("partial", stdout), $"'partial' is not a subsequence of '{stdout}'");
        Assert.True(stdout.All(c => "partial".Contains(c)), stdout);
        Assert.Equal("", stderr);
    }

    [Fact]
    public void Run_GuestCrash_ExitsFourWithOneLine()
    {
        string g = Guest("crash.elf", a => a.ud2());
        var (code, stdout, stderr) = Toyvmm("run", g);
        Assert.Equal(ExitCodes.VmError, code);
        Assert.Equal("", stdout);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("toyvmm: error: VM error: vCPU 0: ", lines[0]);
    }

    [Fact]
    public void Run_InstructionLimit_ExitsSix()
    {
        string g = Guest("spin.elf", a => { var l = a.CreateLabel(); a.Label(ref l); a.jmp(l); });
        var (code, _, stderr) = Toyvmm("run", g, "--max-instructions", "10000");
        Assert.Equal(ExitCodes.InstructionLimit, code);
        Assert.Contains("instruction limit", stderr);
    }

    [Fact]
    public void Run_BadArguments_ExitsTwoWithUsageOnStderr()
    {
        var (code, stdout, stderr) = Toyvmm("run", "--vcpus", "x");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal("", stdout);
        Assert.Contains(CommandLine.Usage, stderr);
    }

    [Fact]
    public void Run_NotAnElf_ExitsThreeNamingTheRule()
    {
        string path = Path.Combine(_dir, "text.elf");
        File.WriteAllText(path, "#!/bin/sh\n" + string.Concat(Enumerable.Repeat("echo not a guest\n", 8)));
        var (code, stdout, stderr) = Toyvmm("run", path);
        Assert.Equal(ExitCodes.BadGuestFile, code);
        Assert.Equal("", stdout);
        Assert.Contains("ELF refused (magic)", stderr);
    }

    [Fact]
    public void Version_PrintsToyvmmAndVersionOnStdout()
    {
        var (code, stdout, stderr) = Toyvmm("--version");
        Assert.Equal(0, code);
        Assert.Equal("", stderr);
        Assert.Matches(@"^toyvmm \d+\.\d+\.\d+\S*\n$", stdout);
        Assert.Equal(stdout, Toyvmm("version").Stdout);
    }

    [Fact]
    public void Run_TypoInOption_SuggestsTheOptionOnOneLine()
    {
        var (code, stdout, stderr) = Toyvmm("run", "g.elf", "--memroy", "64M");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal("", stdout);
        Assert.Equal($"toyvmm: error: unknown option '--memroy' (did you mean --memory?)\n{CommandLine.Usage}\n", stderr);
    }

    [Fact]
    public void Run_SettingsFromEnvironmentAndWorkingFolder_ReachTheRun()
    {
        // The process's own environment provider and working folder, not the injected ones.
        string g = Guest("spin.elf", a => { var l = a.CreateLabel(); a.Label(ref l); a.jmp(l); });
        File.WriteAllText(Path.Combine(_dir, "toyvmm.json"), """{ "memory": "16M", "maxInstructions": 10000 }""");
        var (code, _, stderr) = ToyvmmIn(_dir, new() { ["TOYVMM_VCPUS"] = "2" }, "run", g);
        Assert.Equal(ExitCodes.InstructionLimit, code);
        Assert.Contains("instruction limit", stderr);

        (code, _, stderr) = ToyvmmIn(_dir, new() { ["TOYVMM_VCPUS"] = "lots" }, "run", g);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.StartsWith("toyvmm: error: TOYVMM_VCPUS: 'lots' is not a whole number\n", stderr);

        // The command line wins over the environment (and the file): 3M alone would be refused.
        (code, _, _) = ToyvmmIn(_dir, new() { ["TOYVMM_MEMORY"] = "3M" }, "run", g, "--memory", "16M");
        Assert.Equal(ExitCodes.InstructionLimit, code);
        (code, _, stderr) = ToyvmmIn(_dir, new() { ["TOYVMM_MEMORY"] = "3M" }, "run", g);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.StartsWith("toyvmm: error: TOYVMM_MEMORY: 3M is outside 4M..64G\n", stderr);
    }

    private static bool IsSubsequence(string needle, string hay)
    {
        int i = 0;
        foreach (char c in hay)
            if (i < needle.Length && c == needle[i]) i++;
        return i == needle.Length;
    }

    [Fact]
    public void Run_WithStatsUnderPressure_ReportsWhereTheTimeWentOnStderr()
    {
        var (code, _, stderr) = Toyvmm("run", GuestFiles.Elf("memhot"), "--memory", "64M", "--host-memory", "16M",
            "--vcpus", "2", "--pageout-interval", "5", "--check", "--stats");
        Assert.Equal(0, code);
        // The end-of-run table: every fault kind, the invalidation causes the run had,
        // the shootdown steps, the host's counters under names a newcomer reads, the checker.
        foreach (var part in new[] { "2 vCPUs", "MIPS", "settings: ", "secondary faults", "host page present", "zero-fill", "swap-in",
                     "invalidations", "reclaim", "page-out", "TLB shootdowns:", "pages written to swap", "pages read back from swap",
                     "pages forced out", "checker: on, 0 violations" })
            Assert.Contains(part, stderr);
        // Table lines are the program's output, not messages: no prefix.
        Assert.DoesNotContain("toyvmm: secondary faults", stderr);
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int mkfifo(string path, uint mode);

    [Fact]
    public void Run_GuestIsFifo_ExitsThreeWithoutBlocking()
    {
        if (OperatingSystem.IsWindows()) return;
        string fifo = Path.Combine(_dir, "guest.fifo");
        Assert.Equal(0, mkfifo(fifo, 0x180));
        // No writer ever opens the FIFO: a blocking open() would hang (the helper's bound fails the test).
        var (code, stdout, stderr) = Toyvmm("run", fifo);
        Assert.Equal(ExitCodes.BadGuestFile, code);
        Assert.Equal("", stdout);
        Assert.Equal($"toyvmm: error: {fifo}: is not a regular file (a pipe, FIFO, socket or character device), not a guest ELF file\n", stderr);
    }

    [Fact]
    public void Run_GuestIsDirectory_SaysIsADirectory()
    {
        var (code, _, stderr) = Toyvmm("run", _dir);
        Assert.Equal(ExitCodes.BadGuestFile, code);
        Assert.Equal($"toyvmm: error: {_dir}: is a directory, not a guest ELF file\n", stderr);
    }

    [Fact]
    public void Run_SwapFileIsTheGuest_RefusedGuestUntouched()
    {
        string g = Guest("hello.elf", a => { a.Print("hi\n"); a.hlt(); });
        byte[] before = File.ReadAllBytes(g);
        var (code, stdout, stderr) = Toyvmm("run", g, "--swap-file", g);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal("", stdout);
        Assert.StartsWith($"toyvmm: error: --swap-file {g} already exists", stderr);
        Assert.Equal(before, File.ReadAllBytes(g));
    }

    [Fact]
    public void Run_SwapFileEmpty_UsageError()
    {
        string g = Guest("hello.elf", a => { a.Print("hi\n"); a.hlt(); });
        var (code, _, stderr) = Toyvmm("run", g, "--swap-file", "");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.StartsWith("toyvmm: error: --swap-file: the path is empty", stderr);
    }

    [Fact]
    public void Run_NamedSwapFile_UsedThenDeletedAtTheEnd()
    {
        string g = Guest("touch.elf", a =>
        {
            // Touch 2 MiB of RAM with a 1 MiB frame pool: pages go to the swap file.
            a.mov(rdi, 0x400000);
            a.mov(rcx, 512);
            var loop = a.CreateLabel();
            a.Label(ref loop);
            a.mov(__qword_ptr[rdi], rcx);
            a.add(rdi, 4096);
            a.dec(rcx);
            a.jnz(loop);
            a.Print("done\n");
            a.hlt();
        });
        string swap = Path.Combine(_dir, "run.swap");
        var (code, stdout, stderr) = Toyvmm("run", g, "--memory", "16M", "--host-memory", "1M", "--swap-file", swap, "--report", Path.Combine(_dir, "r.json"));
        Assert.True(code == 0, stderr);
        Assert.Equal("done\n", stdout);
        Assert.False(File.Exists(swap), "the swap file the run created is deleted at its end");
        using var report = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "r.json")));
        Assert.True(report.RootElement.GetProperty("host").GetProperty("pageOuts").GetInt64() > 0, "the run used its swap file");
    }

    [Fact]
    public void Run_HostMemoryLargerThanTheMachine_NamesHostMemory()
    {
        ulong machine = (ulong)GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (machine == 0 || machine >= RunOptions.MaxMemoryBytes) return;   // no --host-memory the validator takes is too big here
        string g = Guest("hello.elf", a => { a.Print("hi\n"); a.hlt(); });
        var (code, _, stderr) = Toyvmm("run", g, "--memory", "16M", "--host-memory", SizeParser.Format(RunOptions.MaxMemoryBytes));
        Assert.Equal(ExitCodes.HostOutOfMemory, code);
        Assert.StartsWith($"toyvmm: error: host out of memory: --host-memory {SizeParser.Format(RunOptions.MaxMemoryBytes)} is more than the machine's", stderr);
        Assert.DoesNotContain("guest RAM", stderr);
    }

    /// <summary>
    /// A 64 GiB guest on 1 GiB of frames runs: guest RAM is bounded by swap, not by the
    /// machine. When 64 GiB is more than the frames plus the free space of the swap file's
    /// filesystem (read here the way the VMM reads it), the run starts with exactly one
    /// warning line naming the sizes; otherwise it says nothing on standard error.
    /// </summary>
    [Fact]
    public void Run_64GiBGuestOn1GiBOfFrames_RunsAndWarnsOnlyWhenSwapSpaceCannotHoldIt()
    {
        string g = Guest("hello.elf", a => { a.Print("big\n"); a.hlt(); });
        string swap = Path.Combine(_dir, "swap");
        long free = new DriveInfo(_dir).AvailableFreeSpace;
        var (code, stdout, stderr) = Toyvmm("run", g, "--memory", "64G", "--host-memory", "1G", "--swap-file", swap, "--quiet");
        Assert.Equal(0, code);
        Assert.Equal("big\n", stdout);
        ulong canHold = (1UL << 30) + (ulong)Math.Min(free, (64L << 30) + (16L << 20));
        // Other processes write to the same filesystem meanwhile: within 2 GiB of the
        // threshold the VMM's own reading may fall on either side, so either answer is right.
        bool nearThreshold = Math.Abs(free - (63L << 30)) < (2L << 30);
        if (nearThreshold ? stderr != "" : 64UL << 30 > canHold)
        {
            var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Single(lines);
            Assert.StartsWith($"toyvmm: warning: guest RAM of 64G is more than the host can hold: 1G of host memory plus ", lines[0]);
            Assert.Contains($"of free space for the swap file on {_dir}", lines[0]);
            Assert.EndsWith("the run ends with status 5 (out of swap space) if the guest touches more", lines[0]);
        }
        else Assert.Equal("", stderr);
    }
}
