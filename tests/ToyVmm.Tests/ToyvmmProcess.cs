using System.Diagnostics;

namespace ToyVmm.Tests;

/// <summary>
/// How the tests start the toyvmm program: the apphost built next to them (or <c>dotnet toyvmm.dll</c>),
/// standard output and error redirected, and the signals a user stops a run with at their default
/// handling. A child inherits the signals its parent ignores (a shell that starts the tests in the
/// background with <c>&amp;</c>, or under nohup, ignores SIGINT or SIGHUP), and the .NET runtime leaves
/// an ignored SIGINT ignored, as a program started that way should: a test of what toyvmm does on a
/// signal would find it deaf. <c>env --default-signal</c> puts them back before it execs toyvmm, whose
/// process id is then the one started.
/// </summary>
internal static class ToyvmmProcess
{
    private const string Env = "/usr/bin/env";
    private const string DefaultSignals = "--default-signal=INT,HUP,TERM";

    private static readonly Lazy<bool> EnvResetsSignals = new(() =>
    {
        if (!OperatingSystem.IsLinux() || !File.Exists(Env)) return false;
        var check = new ProcessStartInfo(Env) { ArgumentList = { DefaultSignals, "true" }, RedirectStandardError = true, UseShellExecute = false };
        using var p = Process.Start(check)!;
        p.StandardError.ReadToEnd();
        p.WaitForExit();
        return p.ExitCode == 0;
    });

    public static ProcessStartInfo StartInfo(params IEnumerable<string> args)
    {
        string dir = AppContext.BaseDirectory;
        string apphost = Path.Combine(dir, "toyvmm");
        string[] command = File.Exists(apphost) ? [apphost] : ["dotnet", Path.Combine(dir, "toyvmm.dll")];
        if (EnvResetsSignals.Value) command = [Env, DefaultSignals, .. command];
        var psi = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in command.Skip(1).Concat(args)) psi.ArgumentList.Add(a);
        return psi;
    }
}
