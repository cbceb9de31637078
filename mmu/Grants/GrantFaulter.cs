namespace ToyVmm.Mmu.Grants;

/// <summary>
/// One ongoing fault through a grant: XPMEM's "simple linked list of ongoing
/// faults". A fault is on its grant's list whenever it is between taking a page
/// from the grant and installing it (or giving it back) with the grant's mutex
/// released; a recall marks the faulters whose page it covers for retry.
/// </summary>
/// <remarks>
/// A fault leaves the list without the mutex (<see cref="Finished"/>; the record is
/// pruned under it later), because a secondary MMU may give its page back with its
/// own MMU lock held, and a recall takes that lock with the mutex held.
/// <see cref="Retry"/> is written under the grant's mutex and read by the fault
/// under its MMU lock (the recall takes that lock after marking, to zap), so the
/// read sees every mark made before the zap it could race with. A thread has at
/// most one fault through a grant at a time: its record is found through a
/// thread-static, because the secondary MMU's protocol check names no grant.
/// </remarks>
internal sealed class GrantFaulter(Grant grant, GrantView view, ulong page)
{
    [ThreadStatic] private static GrantFaulter? t_current;

    public Grant Grant { get; } = grant;
    /// <summary>The attacher's view the fault is for (closing it marks the fault).</summary>
    public GrantView View { get; } = view;
    /// <summary>The frame the fault took.</summary>
    public Hfn Frame;
    /// <summary>The fault is over; the record leaves the list the next time the grant's mutex is held.</summary>
    public volatile bool Finished;
    /// <summary>The grant page (index into its PFN table) the fault is for.</summary>
    public ulong Page { get; } = page;
    /// <summary>Set by a recall that covered <see cref="Page"/>: the fault must drop its page and retry.</summary>
    public volatile bool Retry;

    /// <summary>The calling thread's ongoing fault through a grant, or null.</summary>
    public static GrantFaulter? Current
    {
        get => t_current;
        set => t_current = value;
    }

    /// <summary>The protocol's re-check: the calling thread's fault was marked by a recall.</summary>
    public static bool CurrentMustRetry() => t_current?.Retry == true;
}
