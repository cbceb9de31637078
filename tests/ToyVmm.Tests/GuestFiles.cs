namespace ToyVmm.Tests;

/// <summary>Where the guests built by <c>make -C guest</c> are.</summary>
internal static class GuestFiles
{
    private static readonly Lazy<string> Root = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "ToyVmm.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no ToyVmm.sln above {AppContext.BaseDirectory}");
    });

    public static string RepoRoot => Root.Value;

    /// <summary>The VM build of a guest; fails clearly when it has not been built.</summary>
    public static string Elf(string name)
    {
        string path = Path.Combine(RepoRoot, "guest", "build", name + ".elf");
        if (!File.Exists(path))
            throw new FileNotFoundException($"guest {name} is not built: run 'make -C guest' (or 'make test')", path);
        return path;
    }
}
