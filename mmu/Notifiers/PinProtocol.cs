using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Mmu.Notifiers;

/// <summary>
/// Pre-notifier KVM: the kernel never tells the secondary MMU that it reclaims,
/// pages out or write-protects a page, so every secondary entry keeps the
/// get_user_pages reference of its page until the entry goes. A pinned page
/// cannot be freed: reclaim and page-out find it busy and leave it. Coherent,
/// but the guest's memory is locked in: "with page-pinning that means
/// unswappable memlock leak" (Arcangeli, 2008).
/// </summary>
/// <remarks>
/// What the subscribers hear (docs/DESIGN.md "Why notifiers exist"):
/// <code>
///   host operation                    pin: heard?   why
///   reclaim, PAGEOUT, page-out driver no            the kernel had nobody to tell; the page is
///                                                   pinned, so it is skipped (counted busy)
///   mprotect                          no            (not used on guest RAM)
///   DISCARD (DONTNEED), munmap        yes           the VMM drops the guest's mapping of the range
///                                                   itself before it madvises, as a VMM without
///                                                   notifiers had to (deleting the memory slot);
///                                                   the pins go, the frames are freed
///   aging (young callbacks)           no            nobody to ask
///   teardown (release)                yes           the VM's mappings go with it
/// </code>
/// What the VMM tells runs the range protocol (start zaps and counts the range in
/// progress, end moves the sequence), so a fault racing with a DISCARD retries as
/// under <see cref="SequenceProtocol"/>. A fault racing with reclaim needs no
/// re-check: its get_user_pages reference keeps the page from being unmapped
/// until the entry holds it as a pin.
/// </remarks>
public sealed class PinProtocol : INotifierProtocol
{
    public static readonly PinProtocol Instance = new();

    private PinProtocol() { }

    public NotifierProtocol Kind => NotifierProtocol.Pin;

    /// <summary>Only what the VMM itself does to guest RAM: the guest's mapping of the range goes away.</summary>
    public bool SubscribersHear(in InvalidateRange range) => range.Cause is InvalidateCause.Discard or InvalidateCause.Unmap;

    public bool SubscribersHearAging => false;

    public bool BeforePteChange(ReadOnlySpan<IMmuNotifierSubscriber> subscribers, in InvalidateRange range) =>
        !SubscribersHear(range) || SequenceProtocol.Instance.BeforePteChange(subscribers, range);

    public void AfterPteChange(ReadOnlySpan<IMmuNotifierSubscriber> subscribers, in InvalidateRange range)
    {
        if (SubscribersHear(range)) SequenceProtocol.Instance.AfterPteChange(subscribers, range);
    }

    public bool FaultShouldWait(InvalidateSequence sequence, ulong gfn) => sequence.FaultLikelyToRetry(gfn);

    public bool FaultMustRetryLocked(InvalidateSequence sequence, ulong gfn, long sequenceAtStart) =>
        sequence.FaultMustRetryLocked(gfn, sequenceAtStart);

    /// <summary>A new mapping keeps the fault's reference as its pin (its dirty state goes to the page now); a refreshed one gives the extra reference back.</summary>
    public int FaultInstalled(IUserPageReferences pages, Hfn frame, PageRelease how, bool newMapping)
    {
        if (!newMapping)
        {
            pages.PutUserPage(frame, how);
            return 0;
        }
        if (how == PageRelease.Dirty) pages.SetPageDirty(frame);
        return 1;
    }

    /// <summary>The entry's pin goes back (its dirty bit was handed over by the zap).</summary>
    public int MappingDropped(IUserPageReferences pages, Hfn frame)
    {
        pages.PutUserPage(frame, PageRelease.Unused);
        return -1;
    }
}
