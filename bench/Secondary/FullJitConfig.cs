using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;

namespace ToyVmm.Bench.Secondary;

/// <summary>
/// Benchmarks with an [IterationSetup] run one invocation per iteration, too
/// few for tiered JIT to reach optimised code: without this, the invalidate
/// benchmarks measured tier-0 code (about 10x slower). Tiering is switched off
/// so every method is compiled fully optimised from its first call.
/// </summary>
public sealed class FullJitConfig : ManualConfig
{
    public FullJitConfig() =>
        AddJob(Job.Default
            .WithEnvironmentVariables(new EnvironmentVariable("DOTNET_TieredCompilation", "0"))
            .WithWarmupCount(3).WithIterationCount(15)
            .AsDefault());
}
