using System.Diagnostics;

namespace ToyVmm.Bench.Scenario;

/// <summary>What every <c>make bench</c> scenario needs: the repository, timed processes, medians.</summary>
internal static class ScenarioTools
{
    /// <summary>Wall-clock seconds of <paramref name="path"/> run to its end (standard output read and dropped); a non-zero exit throws.</summary>
    public static double TimeProcess(string path, string[] args) => TimeProcessWithCpu(path, args).Wall;

    /// <summary>
    /// Wall-clock and CPU (user + system) seconds of <paramref name="path"/> run to its end
    /// (standard output read and dropped); a non-zero exit throws. The CPU time is the growth of
    /// getrusage(RUSAGE_CHILDREN) across the run: the runtime reaps the child before WaitForExit
    /// returns, so it is right while one child runs at a time, as in every scenario.
    /// </summary>
    public static (double Wall, double Cpu) TimeProcessWithCpu(string path, string[] args)
    {
        var psi = new ProcessStartInfo(path) { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        double cpu0 = ChildrenCpuSeconds();
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        sw.Stop();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{path} exited {p.ExitCode}");
        return (sw.Elapsed.TotalSeconds, ChildrenCpuSeconds() - cpu0);
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern unsafe int getrusage(int who, long* usage);

    /// <summary>User + system seconds of every child reaped so far (struct rusage starts with two struct timeval).</summary>
    private static unsafe double ChildrenCpuSeconds()
    {
        long* ru = stackalloc long[18];
        if (getrusage(-1, ru) != 0) throw new InvalidOperationException($"getrusage failed, errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
        return ru[0] + ru[1] / 1e6 + ru[2] + ru[3] / 1e6;
    }

    /// <summary>The first line <paramref name="path"/> prints when run with <paramref name="arg"/> (a version banner).</summary>
    public static string FirstLine(string path, string arg)
    {
        var psi = new ProcessStartInfo(path, arg) { RedirectStandardOutput = true, UseShellExecute = false };
        using var p = Process.Start(psi)!;
        string line = p.StandardOutput.ReadLine() ?? "";
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return line.Trim();
    }

    /// <summary>The 1-minute load average from /proc/loadavg, or "unknown": printed with every run because the machine is shared.</summary>
    public static string LoadAverage()
    {
        try
        {
            string[] f = File.ReadAllText("/proc/loadavg").Split(' ');
            return f.Length > 0 && f[0].Length > 0 ? f[0] : "unknown";
        }
        catch (IOException) { return "unknown"; }
        catch (UnauthorizedAccessException) { return "unknown"; }
    }

    /// <summary>The first <paramref name="name"/> on the PATH, or null.</summary>
    public static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    public static double Median(IEnumerable<double> xs)
    {
        var a = xs.OrderBy(x => x).ToArray();
        return a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
    }

    /// <summary>The folder that holds ToyVmm.sln, above the bench program.</summary>
    public static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "ToyVmm.sln"))) return dir.FullName;
        return Directory.GetCurrentDirectory();
    }
}
