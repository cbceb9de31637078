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

    /// <summary>
    /// Host frame pool in bytes (--host-memory): a multiple of 4 KiB, at least 256 KiB.
    /// 0 means as large as guest RAM plus 1/8 (no host pressure).
    /// </summary>
    public ulong HostMemoryBytes { get; set; }

    /// <summary>Back guest RAM with one flat block instead of the host and the secondary MMU (--flat-memory).</summary>
    public bool FlatMemory { get; set; }

    /// <summary>Run the MMU invariant checker (--check); a violation stops the VM (exit 7).</summary>
    public bool Check { get; set; }

    /// <summary>The fault/invalidate protocol (--notifier-protocol sequence|broken-2008).</summary>
    public ToyVmm.Mmu.Notifiers.NotifierProtocol Protocol { get; set; }

    /// <summary>The swap file (--swap-file PATH); a temporary file deleted at exit when null.</summary>
    public string? SwapFile { get; set; }

    /// <summary>Force a page-out of a random guest range every N ms while the guest runs (--pageout-interval N); 0 = off.</summary>
    public int PageOutIntervalMs { get; set; }

    /// <summary>Print where the time went (faults, invalidations, host) on standard error at exit (--stats).</summary>
    public bool Stats { get; set; }

    /// <summary>Log VMM details at Debug level to standard error (--verbose).</summary>
    public bool Verbose { get; set; }
}
