using System.Diagnostics;

namespace ToyVmm.Bench.Scenario;

/// <summary>What every <c>make bench</c> scenario needs: the repository, timed processes, medians.</summary>
internal static class ScenarioTools
{
    /// <summary>Wall-clock seconds of <paramref name="path"/> run to its end (standard output read and dropped); a non-zero exit throws.</summary>
    public static double TimeProcess(string path, string[] args)
    {
        var psi = new ProcessStartInfo(path) { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        sw.Stop();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{path} exited {p.ExitCode}");
        return sw.Elapsed.TotalSeconds;
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
