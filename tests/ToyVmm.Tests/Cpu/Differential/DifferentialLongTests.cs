using Xunit;
using Xunit.Abstractions;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>The whole catalog again from another seed: more random states for every form.</summary>
[Collection(DifferentialCollection.Name)]
public sealed class DifferentialLongTests(ITestOutputHelper output)
{
    [Fact]
    [Trait("Category", "Long")]
    public void Catalog_SecondSeed_MatchesHostCpu()
    {
        var forms = Catalog.All;
        var results = new FormResult[forms.Count];
        Parallel.For(0, forms.Count, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
            i => results[i] = DifferentialEngine.Run(forms[i], DifferentialRun.Seed + 1));
        var failed = results.Where(r => r.Mismatches > 0 && !KnownGaps.Entries.ContainsKey(r.Form.ToString())).ToList();
        foreach (var r in failed) output.WriteLine(r.Reports[0]);
        output.WriteLine($"{results.Count(r => r.Skipped is null)} forms, {results.Sum(r => r.Compared)} cases compared, {failed.Count} forms differ");
        Assert.True(failed.Count == 0, $"{failed.Count} form(s) differ from the host CPU: {string.Join(", ", failed.Take(40).Select(r => r.Form.ToString()))}");
    }
}
