namespace ToyVmm.Cpu;

/// <summary>Counters of the translation tier.</summary>
/// <param name="BlocksCompiled">blocks whose compiled code was swapped in</param>
/// <param name="OpsCompiled">instructions compiled inline in those blocks (the rest of each block runs interpreted)</param>
/// <param name="Declined">blocks not compiled (first op not compilable) or whose compilation was refused</param>
/// <param name="Freed">compiled methods released with their block's slot</param>
/// <param name="Live">compiled methods held now (live and retired blocks not yet freed)</param>
/// <param name="RegionBlocks">blocks compiled into another block's region (besides their own compilation, if any)</param>
public readonly record struct TierStats(long BlocksCompiled, long OpsCompiled, long Declined, long Freed, long Live, long RegionBlocks = 0);
