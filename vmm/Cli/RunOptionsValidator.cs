using Microsoft.Extensions.Options;
using ToyVmm.Vm;

namespace ToyVmm.Cli;

/// <summary>Checks <see cref="RunOptions"/> when the host starts; a failure exits with <see cref="ExitCodes.Usage"/>.</summary>
public sealed class RunOptionsValidator : IValidateOptions<RunOptions>
{
    public ValidateOptionsResult Validate(string? name, RunOptions o)
    {
        var failures = new List<string>();
        if (string.IsNullOrWhiteSpace(o.GuestPath))
            failures.Add("no guest file given");
        else if (!File.Exists(o.GuestPath))
            failures.Add($"guest file '{o.GuestPath}' does not exist");

        bool memoryOk = true;
        if (o.MemoryBytes % (1UL << 20) != 0)
        {
            failures.Add($"--memory {SizeParser.Format(o.MemoryBytes)} is not a multiple of 1M");
            memoryOk = false;
        }
        else if (o.MemoryBytes < RunOptions.MinMemoryBytes || o.MemoryBytes > RunOptions.MaxMemoryBytes)
        {
            failures.Add($"--memory {SizeParser.Format(o.MemoryBytes)} is outside {SizeParser.Format(RunOptions.MinMemoryBytes)}..{SizeParser.Format(RunOptions.MaxMemoryBytes)}");
            memoryOk = false;
        }

        if (o.Vcpus < 1)
            failures.Add($"--vcpus {o.Vcpus} must be at least 1");
        else if (memoryOk && o.Vcpus > BootLayout.MaxVcpus(o.MemoryBytes))
            failures.Add($"--vcpus {o.Vcpus}: the 64 KiB stacks of at most {BootLayout.MaxVcpus(o.MemoryBytes)} vCPUs fit in the reserved top 1 MiB with --memory {SizeParser.Format(o.MemoryBytes)}");

        if (o.MaxInstructions < 0)
            failures.Add($"--max-instructions {o.MaxInstructions} must not be negative");

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
