using Xunit;
using Xunit.Abstractions;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>Every catalog form assembles and runs natively from its generated inputs (no fault, deterministic).</summary>
[Collection(DifferentialCollection.Name)]
public sealed class CatalogNativeTests(ITestOutputHelper output)
{
    [Fact]
    public void Catalog_EveryForm_RunsNativelyAndDeterministically()
    {
        var native = NativeRunner.Instance;
        int forms = 0, variants = 0;
        foreach (var form in Catalog.All)
        {
            if (form.HostMissing is not null) continue;
            forms++;
            for (int v = 0; v < form.Variants.Count; v++)
            {
                variants++;
                var variant = form.Variants[v];
                var rng = new Random(v + 1);
                lock (native.Gate)
                {
                    var loaded = native.Load(variant.Emit);
                    Assert.False(string.IsNullOrEmpty(loaded.Text));
                    for (int c = 0; c < 4; c++)
                    {
                        var ctx = new CaseContext(rng, native.RegionBase, variant);
                        ctx.Generate(form.Profile);
                        form.Prepare?.Invoke(ctx);
                        variant.Prepare?.Invoke(ctx);
                        var first = native.Run(ctx.State);
                        var second = native.Run(ctx.State);
                        string diff = DifferentialEngine.Differences(first, second, FlagRules.All);
                        Assert.True(diff.Length == 0, $"{form} ({loaded.Text}) is not deterministic natively:\n{diff}");
                    }
                }
            }
        }
        output.WriteLine($"{forms} forms, {variants} snippets ran natively");
        foreach (var g in Catalog.All.GroupBy(f => f.Family))
            output.WriteLine($"{g.Key,-8} {g.Count(),4} forms, {g.Sum(f => f.Variants.Count * f.CasesPerVariant),7} planned cases");
        Assert.True(forms >= DifferentialTests.MinimumForms);
    }
}
