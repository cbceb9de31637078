namespace ToyVmm.Cli;

/// <summary>
/// Options of <c>toyvmm run</c>, filled from the command line by <see cref="CommandLine"/>
/// and checked by <see cref="RunOptionsValidator"/> when the host starts.
/// Add new options here, in <see cref="CommandLine"/>'s table and in the validator.
/// </summary>
public sealed class RunOptions
{
    public const ulong DefaultMemoryBytes = 64UL << 20;
    public const ulong MinMemoryBytes = 4UL << 20;
    public const ulong MaxMemoryBytes = 64UL << 30;

    /// <summary>The guest ELF file.</summary>
    public string GuestPath { get; set; } = "";

    /// <summary>Guest RAM in bytes (--memory): a multiple of 1 MiB, 4 MiB .. 64 GiB.</summary>
    public ulong MemoryBytes { get; set; } = DefaultMemoryBytes;

    /// <summary>vCPU count (--vcpus): at least 1, at most what fits in the reserved top.</summary>
    public int Vcpus { get; set; } = 1;

    /// <summary>Per-vCPU instruction budget (--max-instructions); 0 means none.</summary>
    public long MaxInstructions { get; set; }

    /// <summary>Log VMM details at Debug level to standard error (--verbose).</summary>
    public bool Verbose { get; set; }
}
