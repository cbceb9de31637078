namespace ToyVmm.Mmu.Notifiers;

/// <summary>
/// No notifiers and no pins, wrong on purpose: the secondary MMU gives the page
/// reference back once its entry is installed (as under the notifier protocols)
/// but nobody ever tells it that the host reclaimed, paged out or discarded the
/// page. The host frees frames that secondary entries still map; the frames are
/// handed to other pages, and the guest reads and writes another page's data:
/// "without page-pinning it would mean memory corruption" (Arcangeli, 2008).
/// </summary>
/// <remarks>
/// The invariant checker catches the first frame freed under a live entry
/// (exit 7). Without it a guest that reads back its data sees the corruption.
/// The host pointers stay inside the frame pool, which stays allocated, so the
/// VMM itself never touches memory it does not own. Never use it for anything
/// but watching that happen.
/// </remarks>
public sealed class NoNotifierProtocol : INotifierProtocol
{
    public static readonly NoNotifierProtocol Instance = new();

    private NoNotifierProtocol() { }

    public NotifierProtocol Kind => NotifierProtocol.None;

    public bool SubscribersHear(in InvalidateRange range) => false;

    public bool SubscribersHearAging => false;

    /// <summary>Nobody hears of the change, before or after.</summary>
    public bool BeforePteChange(ReadOnlySpan<IMmuNotifierSubscriber> subscribers, in InvalidateRange range) => true;

    public void AfterPteChange(ReadOnlySpan<IMmuNotifierSubscriber> subscribers, in InvalidateRange range) { }

    public bool FaultShouldWait(InvalidateSequence sequence, ulong gfn) => false;

    public bool FaultMustRetryLocked(InvalidateSequence sequence, ulong gfn, long sequenceAtStart) => false;

    /// <summary>The bug: the reference goes back, and nothing will ever zap the entry.</summary>
    public int FaultInstalled(IUserPageReferences pages, Hfn frame, PageRelease how, bool newMapping)
    {
        pages.PutUserPage(frame, how);
        return 0;
    }

    public int MappingDropped(IUserPageReferences pages, Hfn frame) => 0;
}
