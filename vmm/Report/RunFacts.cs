namespace ToyVmm.Report;

/// <summary>
/// What the run itself knows and the measurement snapshot does not: how it ended,
/// how big it was, the settings it ran with and the host's counters at the end.
/// The integrator fills it after the VM stops; <see cref="RunReport.Build"/> reads it.
/// </summary>
public sealed record RunFacts
{
    /// <summary>The process exit status the run ends with.</summary>
    public required int ExitStatus { get; init; }
    /// <summary>How the VM ended, in words (e.g. <c>AllHalted</c>, <c>InvariantViolation</c>), or null.</summary>
    public string? Outcome { get; init; }
    /// <summary>The guest ELF file as given on the command line.</summary>
    public required string GuestPath { get; init; }
    public required int Vcpus { get; init; }
    /// <summary>Instructions retired by every vCPU.</summary>
    public required long Instructions { get; init; }
    /// <summary>Wall time from the first vCPU start to the last vCPU stop.</summary>
    public required double WallSeconds { get; init; }
    /// <summary>Every option as the run used it (defaults included), in the order the report lists them.</summary>
    public required IReadOnlyList<KeyValuePair<string, string>> Settings { get; init; }
    /// <summary>The host's counters at the end of the run, or null for <c>--flat-memory</c>.</summary>
    public HostCounters? Host { get; init; }
    /// <summary>The invariant checker (<c>--check</c>).</summary>
    public CheckerFacts Checker { get; init; } = CheckerFacts.Off;
    /// <summary>The shadow MMU's counters by name (<c>--mmu shadow</c>), or null under EPT and flat memory.</summary>
    public IReadOnlyList<KeyValuePair<string, long>>? Shadow { get; init; }
}

/// <summary>The simulated host's counters at the end of a run (the report's <c>host</c>).</summary>
public sealed record HostCounters
{
    /// <summary>Frames in the host's pool.</summary>
    public required long FramesTotal { get; init; }
    /// <summary>Frames free when the run ended.</summary>
    public required long FramesFree { get; init; }
    /// <summary>Pages written to swap (reclaim and forced page-outs).</summary>
    public long PageOuts { get; init; }
    /// <summary>Pages read back from the swap file.</summary>
    public long SwapIns { get; init; }
    /// <summary>Faults on swapped-out pages whose frame was still in the swap cache.</summary>
    public long SwapCacheHits { get; init; }
    /// <summary>Frames allocated and zeroed for a first touch or after DISCARD.</summary>
    public long ZeroFills { get; init; }
    /// <summary>Failed writes to the swap file.</summary>
    public long WriteErrors { get; init; }
    /// <summary>Failed reads from the swap file.</summary>
    public long ReadErrors { get; init; }
    /// <summary>Pages read back from swap whose checksum did not match what was written.</summary>
    public long ChecksumErrors { get; init; }
    /// <summary>
    /// Any further counters (a shadow MMU's, a driver's), by camelCase name, in the
    /// order the report lists them; they land under <c>host.other</c>.
    /// </summary>
    public IReadOnlyList<KeyValuePair<string, long>> Other { get; init; } = [];
}

/// <summary>The invariant checker's state at the end of a run (the report's <c>checker</c>).</summary>
public sealed record CheckerFacts(bool Enabled, long Violations, string? FirstViolation = null)
{
    public static readonly CheckerFacts Off = new(false, 0);
}
