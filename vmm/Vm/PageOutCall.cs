namespace ToyVmm.Vm;

/// <summary>
/// One page-out call of the <see cref="PageOutDriver"/>: a contiguous run of guest pages
/// (PAGEOUT of a range), or a list of scattered ones (the vectored PAGEOUT), and what it took out.
/// </summary>
/// <param name="Schedule">Index of the schedule in the driver's list.</param>
/// <param name="Pick">How the schedule picks pages.</param>
/// <param name="FirstPage">First (lowest) guest-physical page of the call.</param>
/// <param name="Pages">Pages in the run or the list.</param>
/// <param name="PagedOut">Pages the call took out of memory (resident and not busy).</param>
/// <param name="Listed">The guest pages of a vectored call, ascending; null for a run.</param>
internal readonly record struct PageOutCall(int Schedule, PageOutPick Pick, ulong FirstPage, ulong Pages, long PagedOut, IReadOnlyList<ulong>? Listed = null)
{
    /// <summary>Every guest page the call asked for.</summary>
    public IEnumerable<ulong> GuestPages
    {
        get
        {
            if (Listed is not null) return Listed;
            ulong first = FirstPage;
            return Enumerable.Range(0, (int)Pages).Select(i => first + (ulong)i);
        }
    }
}
