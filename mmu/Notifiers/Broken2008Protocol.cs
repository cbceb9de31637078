namespace ToyVmm.Mmu.Notifiers;

/// <summary>
/// A teaching variant, wrong on purpose: the order of the 2008 "mmu notifier"
/// thread before the range protocol. The host tells the subscribers of each page
/// only after it has cleared the PTE (<c>invalidate_page</c>), and a secondary
/// fault installs whatever get_user_pages returned without re-checking anything.
/// </summary>
/// <remarks>
/// The race it lets through (docs/DESIGN.md "The 2008 interleaving"):
/// <code>
///   secondary fault                         host reclaim
///   get_user_pages(hva) -> frame F (+ref)
///                                           clear the PTE of hva
///                                           invalidate_page(hva)   (nothing mapped yet)
///   install spte -> F                       F freed when the fault drops its ref
/// </code>
/// The secondary entry now names a frame the host has freed; the invariant
/// checker reports it. Never use it for anything but watching that happen.
/// </remarks>
public sealed class Broken2008Protocol : INotifierProtocol
{
    public static readonly Broken2008Protocol Instance = new();

    private Broken2008Protocol() { }

    public bool SubscribersHear(in InvalidateRange range) => false;

    /// <summary>The 2008 patches had the young callbacks from the start.</summary>
    public bool SubscribersHearAging => true;

    public NotifierProtocol Kind => NotifierProtocol.Broken2008;

    /// <summary>The bug, host half: nobody hears of the change before it happens.</summary>
    public bool BeforePteChange(ReadOnlySpan<IMmuNotifierSubscriber> subscribers, in InvalidateRange range) => true;

    /// <summary>invalidate_page for each page of the range, after its PTE has already changed.</summary>
    public void AfterPteChange(ReadOnlySpan<IMmuNotifierSubscriber> subscribers, in InvalidateRange range)
    {
        if (range.Event == InvalidateEvent.Release) return;
        if (range.BatchPages is { } batch)
        {
            foreach (ulong vpn in batch)
                foreach (var s in subscribers) s.InvalidatePage(Hva.FromPageNumber(vpn));
            return;
        }
        for (ulong a = range.Start.Value; a < range.End.Value; a += Page.Size)
            foreach (var s in subscribers) s.InvalidatePage(new Hva(a));
    }

    /// <summary>The bug, secondary half: faults are not serialised against invalidations.</summary>
    public bool FaultShouldWait(InvalidateSequence sequence, ulong gfn) => false;

    public bool FaultMustRetryLocked(InvalidateSequence sequence, ulong gfn, long sequenceAtStart) => false;

    /// <summary>Like the range protocol, the entry holds no reference (which is what makes the race a use-after-free).</summary>
    public int FaultInstalled(IUserPageReferences pages, Hfn frame, PageRelease how, bool newMapping)
    {
        pages.PutUserPage(frame, how);
        return 0;
    }

    public int MappingDropped(IUserPageReferences pages, Hfn frame) => 0;
}
