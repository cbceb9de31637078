using BenchmarkDotNet.Running;

// Scenario and micro benchmarks; see bench/RESULTS.md.
if (args.Length > 0 && args[0] == "host-latency") { ToyVmm.Bench.Host.HostLatencyProbe.Run(); return; }
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
