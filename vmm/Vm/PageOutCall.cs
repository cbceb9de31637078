namespace ToyVmm.Vm;

/// <summary>One page-out call of the <see cref="PageOutDriver"/>: a contiguous run of guest pages and what it took out.</summary>
/// <param name="Schedule">Index of the schedule in the driver's list.</param>
/// <param name="Pick">How the schedule picks pages.</param>
/// <param name="FirstPage">First guest-physical page of the run.</param>
/// <param name="Pages">Pages in the run.</param>
/// <param name="PagedOut">Pages the call took out of memory (resident and not busy).</param>
internal readonly record struct PageOutCall(int Schedule, PageOutPick Pick, ulong FirstPage, ulong Pages, long PagedOut);
