namespace ToyVmm.Cli;

/// <summary>
/// "Did you mean ...?" for a mistyped option, verb or key: the closest known name by
/// optimal-string-alignment distance (an adjacent swap counts as one edit), or the one
/// name that the typed text is a prefix of.
/// </summary>
/// <remarks>
/// System.CommandLine has typo corrections, but only inside its own error output
/// (several lines followed by the whole help); ToyVmm's usage errors are one line.
/// </remarks>
public static class TypoSuggester
{
    /// <summary>The closest of <paramref name="candidates"/> to <paramref name="typed"/>, or null when none is close.</summary>
    public static string? Suggest(string typed, IEnumerable<string> candidates)
    {
        string t = typed.ToLowerInvariant();
        string core = t.TrimStart('-');
        if (core.Length == 0) return null;
        // Up to 1 edit for short names, 2 for longer ones: "--cpus" finds --vcpus, "--fast" finds nothing.
        int allowed = core.Length <= 4 ? 1 : 2;
        string? best = null;
        int bestDistance = int.MaxValue;
        var prefixOf = new List<string>();
        foreach (string candidate in candidates.Distinct())
        {
            string c = candidate.ToLowerInvariant();
            if (c == t) return candidate;
            int d = Distance(t, c);
            if (d < bestDistance) { bestDistance = d; best = candidate; }
            if (core.Length >= 3 && c.StartsWith(t, StringComparison.Ordinal)) prefixOf.Add(candidate);
        }
        if (best != null && bestDistance <= allowed) return best;
        return prefixOf.Count == 1 ? prefixOf[0] : null;
    }

    /// <summary>Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps.</summary>
    public static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                int v = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                    v = Math.Min(v, d[i - 2, j - 2] + 1);
                d[i, j] = v;
            }
        }
        return d[a.Length, b.Length];
    }
}
