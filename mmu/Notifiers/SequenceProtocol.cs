namespace ToyVmm.Mmu.Notifiers;

/// <summary>
/// KVM's protocol, the one ToyVmm runs by default. The host brackets every PTE
/// change with start and end; start zaps and counts the range in progress, end
/// moves the sequence on; a fault re-checks both under the MMU lock and retries
/// (the state table is on <see cref="InvalidateSequence"/>).
/// </summary>
public sealed class SequenceProtocol : INotifierProtocol
{
    public static readonly SequenceProtocol Instance = new();

    private SequenceProtocol() { }

    public bool SubscribersHear(in InvalidateRange range) => true;

    public bool SubscribersHearAging => true;

    public NotifierProtocol Kind => NotifierProtocol.Sequence;

    /// <summary>
    /// Every subscriber's start. When a non-blocking start is refused, the
    /// subscribers that had already started get their end and false is returned.
    /// </summary>
    public bool BeforePteChange(ReadOnlySpan<IMmuNotifierSubscriber> subscribers, in InvalidateRange range)
    {
        for (int i = 0; i < subscribers.Length; i++)
        {
            if (subscribers[i].InvalidateRangeStart(range)) continue;
            if (range.MayBlock)
                throw new InvalidOperationException($"subscriber {subscribers[i]} refused a blockable invalidation {range}");
            for (int j = 0; j < i; j++) subscribers[j].InvalidateRangeEnd(range);
            return false;
        }
        return true;
    }

    public void AfterPteChange(ReadOnlySpan<IMmuNotifierSubscriber> subscribers, in InvalidateRange range)
    {
        foreach (var s in subscribers) s.InvalidateRangeEnd(range);
    }

    public bool FaultShouldWait(InvalidateSequence sequence, ulong gfn) => sequence.FaultLikelyToRetry(gfn);

    public bool FaultMustRetryLocked(InvalidateSequence sequence, ulong gfn, long sequenceAtStart) =>
        sequence.FaultMustRetryLocked(gfn, sequenceAtStart);

    /// <summary>The entry holds no reference: the notifiers tell it before the host lets the frame go.</summary>
    public int FaultInstalled(IUserPageReferences pages, Hfn frame, PageRelease how, bool newMapping)
    {
        pages.PutUserPage(frame, how);
        return 0;
    }

    public int MappingDropped(IUserPageReferences pages, Hfn frame) => 0;
}
