using ToyVmm.Vm;

namespace ToyVmm.Cli;

/// <summary>
/// Options of <c>toyvmm run</c>, filled by <see cref="RunOptionsBuilder"/> from the config
/// file, the <c>TOYVMM_</c> environment variables and the command line (in that order,
/// later wins), and checked by <see cref="RunOptionsValidator"/> before anything runs.
/// A new option is a property here (and in <see cref="CopyTo"/>), a line in
/// <see cref="RunSettings"/> and a check in the validator.
/// </summary>
public sealed class RunOptions
{
    public const ulong DefaultMemoryBytes = 64UL << 20;
    public const ulong MinMemoryBytes = 4UL << 20;
    public const ulong MaxMemoryBytes = 64UL << 30;
    public const int DefaultTraceLimit = 4_000_000;
    public const int MinTraceLimit = 1000;

    /// <summary>The guest ELF file.</summary>
    public string GuestPath { get; set; } = "";

    /// <summary>
    /// Further guest files, each a VM of its own on the same simulated host
    /// (GUEST-ABI 1.1 "Several VMs on one host"); empty for the usual single VM.
    /// </summary>
    public IReadOnlyList<string> MoreGuests { get; set; } = [];

    /// <summary>Every guest file in VM order: <see cref="GuestPath"/>, then <see cref="MoreGuests"/>.</summary>
    public IReadOnlyList<string> AllGuests => [GuestPath, .. MoreGuests];

    /// <summary>Guest RAM in bytes (--memory): a multiple of 1 MiB, 4 MiB .. 64 GiB.</summary>
    public ulong MemoryBytes { get; set; } = DefaultMemoryBytes;

    /// <summary>vCPU count (--vcpus): at least 1, at most what fits in the reserved top.</summary>
    public int Vcpus { get; set; } = 1;

    /// <summary>Per-vCPU instruction budget (--max-instructions); 0 means none.</summary>
    public long MaxInstructions { get; set; }

    /// <summary>How guest code runs (--cpu): the interpreter alone, or tiered (hot blocks compiled to IL).</summary>
    public CpuMode Cpu { get; set; } = DefaultCpu;

    /// <summary>The default of --cpu.</summary>
    public const CpuMode DefaultCpu = CpuMode.Tiered;

    /// <summary>Entries of a block before it is compiled (--tier-threshold; 0 compiles every block at its first execution).</summary>
    public int TierThreshold { get; set; } = DefaultTierThreshold;

    /// <summary>The default of --tier-threshold.</summary>
    public const int DefaultTierThreshold = 4096;

    /// <summary>
    /// Host frame pool in bytes (--host-memory): a multiple of 4 KiB, at least 256 KiB.
    /// 0 means as large as guest RAM plus 1/8 (no host pressure).
    /// </summary>
    public ulong HostMemoryBytes { get; set; }

    /// <summary>Back guest RAM with one flat block instead of the host and the secondary MMU (--flat-memory).</summary>
    public bool FlatMemory { get; set; }

    /// <summary>Run the MMU invariant checker (--check); a violation stops the VM (exit 7).</summary>
    public bool Check { get; set; }

    /// <summary>Pin each vCPU thread to one CPU (--pin-vcpus, <see cref="ToyVmm.Vm.VmConfig.PinVcpus"/>).</summary>
    public bool PinVcpus { get; set; }

    /// <summary>The fault/invalidate protocol (--notifier-protocol sequence|broken-2008).</summary>
    public ToyVmm.Mmu.Notifiers.NotifierProtocol Protocol { get; set; }

    /// <summary>The secondary MMU (--mmu ept|shadow).</summary>
    public ToyVmm.Vm.SecondaryMmuKind Mmu { get; set; }

    /// <summary>The swap file (--swap-file PATH); a temporary file deleted at exit when null.</summary>
    public string? SwapFile { get; set; }

    /// <summary>
    /// Force a page-out of a random guest range every N ms while the guest runs (--pageout-interval N); 0 = off.
    /// The same schedule is also in <see cref="PageOut"/> as <c>every=Nms,pick=random</c>.
    /// </summary>
    public int PageOutIntervalMs { get; set; }

    /// <summary>
    /// Every forced page-out schedule of the run (--pageout, repeatable), with the
    /// --pageout-interval shorthand last when it is set. Empty: no forced page-outs.
    /// </summary>
    public IReadOnlyList<PageOutSchedule> PageOut { get; set; } = [];

    /// <summary>Print the end-of-run table (faults, invalidations, host) on standard error (--stats).</summary>
    public bool Stats { get; set; }

    /// <summary>Write the JSON report of the run to this file (--report PATH); none when null.</summary>
    public string? ReportPath { get; set; }

    /// <summary>Write a trace-event JSON file of the run to this file (--trace PATH); none when null.</summary>
    public string? TracePath { get; set; }

    /// <summary>The most trace events kept (--trace-limit N): at least <see cref="MinTraceLimit"/>.</summary>
    public int TraceLimit { get; set; } = DefaultTraceLimit;

    /// <summary>Write PNG plots of the run into this folder, created if missing (--plot DIR); none when null.</summary>
    public string? PlotDirectory { get; set; }

    /// <summary>The seed of every random choice of the run (--seed N, default 1): page-out places, picks.</summary>
    public ulong Seed { get; set; } = 1;

    /// <summary>No progress line on standard error while the guest runs (--quiet).</summary>
    public bool Quiet { get; set; }

    /// <summary>The config file the settings were read from (--config FILE or ./toyvmm.json), or null when none.</summary>
    public string? ConfigPath { get; set; }

    /// <summary>Log VMM details at Debug level to standard error (--verbose).</summary>
    public bool Verbose { get; set; }

    /// <summary>Copies every option onto <paramref name="target"/> (how the host's options pipeline receives them).</summary>
    public void CopyTo(RunOptions target)
    {
        target.GuestPath = GuestPath;
        target.MoreGuests = MoreGuests;
        target.MemoryBytes = MemoryBytes;
        target.Vcpus = Vcpus;
        target.MaxInstructions = MaxInstructions;
        target.Cpu = Cpu;
        target.TierThreshold = TierThreshold;
        target.HostMemoryBytes = HostMemoryBytes;
        target.FlatMemory = FlatMemory;
        target.Check = Check;
        target.PinVcpus = PinVcpus;
        target.Protocol = Protocol;
        target.Mmu = Mmu;
        target.SwapFile = SwapFile;
        target.PageOutIntervalMs = PageOutIntervalMs;
        target.PageOut = PageOut;
        target.Stats = Stats;
        target.ReportPath = ReportPath;
        target.TracePath = TracePath;
        target.TraceLimit = TraceLimit;
        target.PlotDirectory = PlotDirectory;
        target.Seed = Seed;
        target.Quiet = Quiet;
        target.ConfigPath = ConfigPath;
        target.Verbose = Verbose;
    }
}

/// <summary>How guest code runs (--cpu).</summary>
public enum CpuMode
{
    /// <summary>Every block interpreted (tier 0 only).</summary>
    Interpreter,
    /// <summary>Blocks start interpreted; hot ones are compiled to IL on a background thread (vmm/Cpu/README.md).</summary>
    Tiered,
}
