using BenchmarkDotNet.Running;

// Scenario and micro benchmarks; see bench/RESULTS.md.
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
