namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// The whole catalog run once per test process, on every core (the native side
/// is serialised on <see cref="NativeRunner.Gate"/>; the interpreter side runs in parallel).
/// The family tests and the summary test read from it.
/// </summary>
public static class DifferentialRun
{
    public const int Seed = 20260101;

    private static readonly Lazy<IReadOnlyDictionary<string, FormResult>> s_results = new(RunAll);

    public static IReadOnlyDictionary<string, FormResult> Results => s_results.Value;

    public static TimeSpan Elapsed { get; private set; }

    private static IReadOnlyDictionary<string, FormResult> RunAll()
    {
        var started = System.Diagnostics.Stopwatch.StartNew();
        // TOYVMM_DIFF_ONLY=text runs only the forms whose "family: name" contains it (for debugging; the floors then fail).
        string? only = Environment.GetEnvironmentVariable("TOYVMM_DIFF_ONLY");
        var forms = Catalog.All.Where(f => string.IsNullOrEmpty(only) || f.ToString().Contains(only, StringComparison.Ordinal)).ToList();
        var results = new FormResult[forms.Count];
        // Longest first keeps both cores busy until the end.
        var order = Enumerable.Range(0, forms.Count).OrderByDescending(i => forms[i].Variants.Count * forms[i].CasesPerVariant).ToArray();
        Parallel.ForEach(order, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
            i => results[i] = DifferentialEngine.Run(forms[i], Seed));
        Elapsed = started.Elapsed;
        return results.ToDictionary(r => r.Form.ToString());
    }
}
