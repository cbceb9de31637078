using System.Globalization;

namespace ToyVmm.Tests.Guests;

/// <summary>One line of guest/guests.txt.</summary>
public sealed record GuestEntry(string Name, string Elf, string Native, int Vcpus, int MemMib, IReadOnlySet<string> Tags)
{
    public bool HasNative => !Tags.Contains("vmonly") && Native != "-";
    public override string ToString() => Name;
}

/// <summary>
/// Reads guest/guests.txt (<c>name elf native vcpus mem_mib tags</c>, '#' comments),
/// the list of every guest the project ships.
/// </summary>
public static class GuestManifest
{
    public static string RepoRoot => GuestFiles.RepoRoot;

    public static string ManifestPath => Path.Combine(RepoRoot, "guest", "guests.txt");

    public static IReadOnlyList<GuestEntry> Load()
    {
        if (!File.Exists(ManifestPath))
            throw new FileNotFoundException($"{ManifestPath} is missing: the guest manifest lists the shipped guests");
        var entries = new List<GuestEntry>();
        int lineNo = 0;
        foreach (var raw in File.ReadLines(ManifestPath))
        {
            lineNo++;
            var line = raw.Split('#')[0].Trim();
            if (line.Length == 0) continue;
            var f = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 5 ||
                !int.TryParse(f[3], NumberStyles.None, CultureInfo.InvariantCulture, out int vcpus) ||
                !int.TryParse(f[4], NumberStyles.None, CultureInfo.InvariantCulture, out int mem))
                throw new FormatException($"{ManifestPath}:{lineNo}: expected 'name elf native vcpus mem_mib [tags]', got '{raw}'");
            var tags = f.Length > 5 ? f[5].Split(',', StringSplitOptions.RemoveEmptyEntries).ToHashSet() : new HashSet<string>();
            entries.Add(new GuestEntry(f[0], f[1], f[2], vcpus, mem, tags));
        }
        return entries;
    }

    public static GuestEntry Get(string name) =>
        Load().SingleOrDefault(e => e.Name == name)
        ?? throw new InvalidOperationException($"guest '{name}' is not listed in {ManifestPath}");

    /// <summary>The absolute path of a manifest path; fails clearly when the build output is missing.</summary>
    public static string RequireBuilt(string relative)
    {
        string path = Path.Combine(RepoRoot, relative);
        if (!File.Exists(path))
            throw new FileNotFoundException(
                $"{relative} is missing: build the guests with `make -C guest` (`make test` does it first)");
        return path;
    }
}
