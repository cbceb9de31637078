namespace ToyVmm.Mmu.Metrics;

/// <summary>
/// Running totals of a hub while the VM runs (<see cref="MeasurementHub.Live"/>): each a
/// racy read, so a progress line may see one count a moment behind another.
/// </summary>
/// <param name="Instructions">Retired by every vCPU (as of each vCPU's last block boundary).</param>
/// <param name="Faults">Secondary faults of every kind.</param>
/// <param name="Invalidations">Invalidations of every cause.</param>
/// <param name="PagesPagedOut">Pages written to swap or dropped by page-out batches.</param>
/// <param name="SwapReads">Pages read back from swap.</param>
/// <param name="FreeFrames">The host's free frames now (0 before the host counters are set).</param>
public readonly record struct LiveFigures(long Instructions, long Faults, long Invalidations, long PagesPagedOut, long SwapReads, int FreeFrames);
