using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Grants;

/// <summary>
/// XPMEM's protocol, the one a grant's attachers follow (docs/DESIGN.md "Grants:
/// the XPMEM protocol"): the grant is the attachers' "host", and it recalls
/// their mappings itself, at the owner's invalidate start, before it returns.
/// </summary>
/// <remarks>
/// Host half: <see cref="Grant"/> calls every attacher's start and end at once
/// from inside its recall (zap, shoot down their TLBs), so no attacher mapping
/// of the range outlives the recall. Secondary half: a fault does not compare
/// sequences; it retries when the recall marked its entry in the grant's list
/// of ongoing faults (<see cref="GrantFaulter"/>), which the fault reads under
/// its MMU lock just before it installs. The mark is set under the grant's
/// mutex before the recall takes each attacher's MMU lock to zap, so a fault
/// either installs before the zap (and is zapped) or sees the mark.
/// </remarks>
public sealed class GrantProtocol : INotifierProtocol
{
    public static readonly GrantProtocol Instance = new();

    private GrantProtocol() { }

    /// <summary>
    /// The sequence protocol's kind: the grant protocol is no choice of a host address
    /// space (nothing names it on the command line), and toward the attacher's MMU its
    /// host half is the sequence protocol's (every attacher's start, then its end).
    /// </summary>
    public NotifierProtocol Kind => NotifierProtocol.Sequence;

    public bool SubscribersHear(in InvalidateRange range) => true;

    /// <summary>The grant forwards the owner's aging to its attachers.</summary>
    public bool SubscribersHearAging => true;

    /// <summary>Every attacher's start (a refused non-blocking start ends those already started).</summary>
    public bool BeforePteChange(ReadOnlySpan<IMmuNotifierSubscriber> subscribers, in InvalidateRange range) =>
        SequenceProtocol.Instance.BeforePteChange(subscribers, range);

    public void AfterPteChange(ReadOnlySpan<IMmuNotifierSubscriber> subscribers, in InvalidateRange range) =>
        SequenceProtocol.Instance.AfterPteChange(subscribers, range);

    /// <summary>Never here: the grant itself holds back fills of a range whose owner's invalidation has not ended.</summary>
    public bool FaultShouldWait(InvalidateSequence sequence, ulong gfn) => false;

    /// <summary>The calling thread's ongoing fault was marked for retry by a recall (the sequence is not read).</summary>
    public bool FaultMustRetryLocked(InvalidateSequence sequence, ulong gfn, long sequenceAtStart) =>
        GrantFaulter.CurrentMustRetry();

    /// <summary>
    /// The attacher's entry keeps no reference: the fault's page goes back to the view,
    /// which takes the fault off the grant's list (without a lock: this runs under the
    /// attacher's MMU lock). The grant's own reference keeps the frame.
    /// </summary>
    public int FaultInstalled(IUserPageReferences pages, Hfn frame, PageRelease how, bool newMapping)
    {
        pages.PutUserPage(frame, how);
        return 0;
    }

    /// <summary>An attacher's entry held no reference: nothing to give back.</summary>
    public int MappingDropped(IUserPageReferences pages, Hfn frame) => 0;
}
