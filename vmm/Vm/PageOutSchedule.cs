namespace ToyVmm.Vm;

/// <summary>Which guest pages a forced page-out takes.</summary>
public enum PageOutPick
{
    /// <summary>A contiguous range at a random place in guest RAM.</summary>
    Random,
    /// <summary>The resident pages the host would reclaim first (its LRU and the secondary MMU's accessed bits).</summary>
    Cold,
    /// <summary>The resident pages most recently used.</summary>
    Hot,
    /// <summary>Contiguous ranges walking guest RAM in order, wrapping at the end.</summary>
    Sweep,
}

/// <summary>
/// One <c>--pageout</c> schedule: how a user forces host page-outs while the guest
/// runs. Several may be combined; each runs on its own from the start of the run.
/// </summary>
public abstract record PageOutSchedule;

/// <summary>
/// <c>every=5ms[,pages=N][,pick=P]</c>: page out <paramref name="Pages"/> pages every
/// <paramref name="Every"/>. <paramref name="Pages"/> null means 1 to 64 pages chosen
/// at random each time (what <c>--pageout-interval MS</c> does).
/// </summary>
public sealed record PeriodicPageOut(TimeSpan Every, int? Pages, PageOutPick Pick) : PageOutSchedule;

/// <summary><c>at=2s,fraction=0.5[,pick=P]</c>: once, at <paramref name="At"/>, page out that fraction of the resident guest pages.</summary>
public sealed record BurstPageOut(TimeSpan At, double Fraction, PageOutPick Pick) : PageOutSchedule;

/// <summary>
/// <c>shrink=16M@1s</c>: at <paramref name="At"/> the host's frame pool shrinks by
/// <paramref name="Bytes"/>, so reclaim (not a forced call) pages guest memory out.
/// </summary>
public sealed record HostShrink(ulong Bytes, TimeSpan At) : PageOutSchedule;
