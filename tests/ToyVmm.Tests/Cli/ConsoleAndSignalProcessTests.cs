using System.Diagnostics;
using System.Runtime.InteropServices;
using Iced.Intel;
using ToyVmm.Cli;
using ToyVmm.Tests.Vm;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cli;

/// <summary>
/// The toyvmm program when its standard output fails or blocks, and when it is
/// signalled while a vCPU is stuck writing: bounded waits, no timing asserted.
/// </summary>
public sealed class ConsoleAndSignalProcessTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("toyvmm-console-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);

    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(1);

    /// <summary>A guest that prints "line\n" forever.</summary>
    private string Chatty()
    {
        string path = Path.Combine(_dir, "chatty.elf");
        File.WriteAllBytes(path, AsmGuest.Build(a =>
        {
            var top = a.CreateLabel();
            a.Label(ref top);
            a.Print("line\n");
            a.jmp(top);
        }).File);
        return path;
    }

    private static void WaitBounded(Process p)
    {
        if (!p.WaitForExit(Bound))
        {
            p.Kill(entireProcessTree: true);
            throw new Xunit.Sdk.XunitException("toyvmm did not end");
        }
        p.WaitForExit();
    }

    [Fact]
    public async Task Run_ReaderClosesThePipe_QuietStopWithSigpipeStatus()
    {
        if (OperatingSystem.IsWindows()) return;
        using var p = Process.Start(ToyvmmProcess.StartInfo("run", Chatty(), "--quiet"))!;
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.Equal("line", p.StandardOutput.ReadLine());
        p.StandardOutput.Close();   // as `| head -1` does
        WaitBounded(p);
        Assert.Equal(ExitCodes.OutputClosed, p.ExitCode);
        Assert.Equal("", await stderr);
    }

    [Fact]
    public async Task Run_StdoutOnAFullDevice_StopsNamingTheError()
    {
        if (!File.Exists("/dev/full")) return;
        var psi = ToyvmmProcess.StartInfo();
        string toyvmm = string.Join(' ', new[] { psi.FileName }.Concat(psi.ArgumentList).Select(a => $"'{a}'"));
        var sh = new ProcessStartInfo("/bin/sh") { ArgumentList = { "-c", $"exec {toyvmm} run '{Chatty()}' --quiet > /dev/full" }, RedirectStandardError = true, UseShellExecute = false };
        using var p = Process.Start(sh)!;
        var stderr = p.StandardError.ReadToEndAsync();
        WaitBounded(p);
        Assert.Equal(ExitCodes.ConsoleError, p.ExitCode);
        Assert.Equal("toyvmm: error: cannot write the guest console: No space left on device\n", await stderr);
    }

    [Theory]
    [InlineData(2)]    // SIGINT
    [InlineData(15)]   // SIGTERM
    [InlineData(1)]    // SIGHUP
    public async Task Run_SignalWhileStdoutIsBlocked_EndsWith130AndSaysInterrupted(int signal)
    {
        if (OperatingSystem.IsWindows()) return;
        string swap = Path.Combine(_dir, "blocked.swap");
        using var p = Process.Start(ToyvmmProcess.StartInfo("run", Chatty(), "--quiet", "--swap-file", swap))!;
        var stderr = p.StandardError.ReadToEndAsync();
        // Nobody reads standard output: once the pipe is full the vCPU blocks in write().
        // Wait until the run is under way (the swap file exists), then give the pipe time to fill.
        for (int i = 0; i < 600 && !File.Exists(swap) && !p.HasExited; i++) await Task.Delay(50);
        await Task.Delay(1000);
        Assert.False(p.HasExited);
        Assert.Equal(0, kill(p.Id, signal));
        WaitBounded(p);
        Assert.Equal(ExitCodes.Interrupted, p.ExitCode);
        Assert.Contains("interrupted", await stderr);
        Assert.False(File.Exists(swap), "the named swap file is deleted even when the run is cut short");
    }
}
