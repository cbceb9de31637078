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

        if (o.HostMemoryBytes != 0 && (o.HostMemoryBytes % 4096 != 0 || o.HostMemoryBytes < (256UL << 10) || o.HostMemoryBytes > RunOptions.MaxMemoryBytes))
            failures.Add($"--host-memory {SizeParser.Format(o.HostMemoryBytes)} must be a multiple of 4K between 256K and {SizeParser.Format(RunOptions.MaxMemoryBytes)}");
        if (o.FlatMemory && (o.HostMemoryBytes != 0 || o.Check || o.PageOutIntervalMs != 0 || o.SwapFile != null || o.Protocol != ToyVmm.Mmu.Notifiers.NotifierProtocol.Sequence))
            failures.Add("--flat-memory has no host: it cannot go with --host-memory, --check, --pageout-interval, --swap-file or --notifier-protocol");
        if (o.PageOutIntervalMs < 0 || o.PageOutIntervalMs > 3_600_000)
            failures.Add($"--pageout-interval {o.PageOutIntervalMs} must be between 0 and 3600000 ms");
        if (o.SwapFile != null)
        {
            string? dir = Path.GetDirectoryName(Path.GetFullPath(o.SwapFile));
            if (dir is null || !Directory.Exists(dir))
                failures.Add($"--swap-file {o.SwapFile}: the directory does not exist");
        }

        if (o.MaxInstructions < 0)
            failures.Add($"--max-instructions {o.MaxInstructions} must not be negative");

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
