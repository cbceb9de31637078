using System.Text;
using Xunit;
using Xunit.Abstractions;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// The interpreter against the host CPU: for every form in <see cref="Catalog"/>,
/// many random register, flag, XMM and memory states run natively and in the
/// interpreter must leave the same registers, memory and defined flags.
/// </summary>
[Collection(DifferentialCollection.Name)]
public sealed class DifferentialTests(ITestOutputHelper output)
{
    /// <summary>The catalog may only grow: fewer forms or cases than this means coverage was lost.</summary>
    public const int MinimumForms = 1400;
    public const int MinimumCases = 150_000;

    public static TheoryData<string> Families()
    {
        var data = new TheoryData<string>();
        foreach (var f in Catalog.Families) data.Add(f);
        return data;
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Family_RandomStates_MatchHostCpu(string family)
    {
        var results = DifferentialRun.Results.Values.Where(r => r.Form.Family == family).ToList();
        Assert.NotEmpty(results);
        var failures = new StringBuilder();
        int compared = 0, failedForms = 0;
        foreach (var r in results)
        {
            compared += r.Compared;
            string key = r.Form.ToString();
            bool known = KnownGaps.Entries.TryGetValue(key, out var reason);
            if (r.Skipped is not null) { output.WriteLine($"skipped {key}: {r.Skipped}"); continue; }
            output.WriteLine($"{(r.Mismatches == 0 ? "ok  " : known ? "GAP " : "FAIL")} {key}: {r.Compared} cases, {r.Mismatches} mismatches{(r.GaveUp ? " (then stopped)" : "")}");
            if (r.Mismatches == 0)
            {
                if (known) failures.AppendLine($"{key} is listed in KnownGaps ({reason}) but now matches: remove the entry");
                continue;
            }
            foreach (var report in r.Reports) output.WriteLine(report);
            if (known) { output.WriteLine($"  (known gap: {reason})"); continue; }
            failedForms++;
            failures.AppendLine($"{key}: {r.Mismatches}{(r.GaveUp ? " (then stopped)" : "")} of {r.Compared} cases differ; first:");
            failures.AppendLine(r.Reports[0]);
        }
        output.WriteLine($"family {family}: {results.Count} forms, {compared} cases compared, {failedForms} forms differ");
        Assert.True(failures.Length == 0, $"{failedForms} form(s) of family {family} differ from the host CPU:\n{failures}");
    }

    [Fact]
    public void Catalog_AllFamilies_CompareAtLeastTheFloorOfFormsAndCases()
    {
        var results = DifferentialRun.Results.Values.ToList();
        int forms = results.Count(r => r.Skipped is null);
        int cases = results.Sum(r => r.Compared);
        int mismatched = results.Count(r => r.Mismatches > 0);
        foreach (var g in results.GroupBy(r => r.Form.Family))
            output.WriteLine($"{g.Key,-8} {g.Count(),4} forms {g.Sum(r => r.Compared),7} cases {g.Count(r => r.Mismatches > 0),4} differ");
        foreach (var r in results.Where(r => r.Skipped is not null))
            output.WriteLine($"skipped on this host: {r.Form} ({r.Skipped})");
        int unstable = results.Sum(r => r.NativeUnstable);
        if (unstable > 0) output.WriteLine($"{unstable} case(s) dropped: the host CPU did not repeat its own result");
        output.WriteLine($"total: {forms} forms, {cases} cases compared against the host CPU, {mismatched} forms differ, in {DifferentialRun.Elapsed.TotalSeconds:F1} s (scale {DifferentialEngine.Scale})");
        Assert.True(unstable <= 16, $"{unstable} cases were dropped because the host CPU did not repeat its own result");
        Assert.True(forms >= MinimumForms, $"only {forms} forms were compared (floor {MinimumForms})");
        Assert.True(cases >= MinimumCases * Math.Min(1.0, DifferentialEngine.Scale), $"only {cases} cases were compared (floor {MinimumCases})");
    }
}

/// <summary>The differential tests share one run and one native block; they run apart from each other.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class DifferentialCollection
{
    public const string Name = "Differential";
}
