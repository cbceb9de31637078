namespace ToyVmm.Mmu.Notifiers;

/// <summary>Which fault/invalidate protocol a host address space and its secondary MMUs follow.</summary>
public enum NotifierProtocol
{
    /// <summary>KVM's invalidate sequence (<see cref="SequenceProtocol"/>).</summary>
    Sequence,
    /// <summary>The 2008 order, kept to watch the race (<see cref="Broken2008Protocol"/>).</summary>
    Broken2008,
    /// <summary>
    /// XPMEM's recall with a list of ongoing faults: what a grant's attachers follow
    /// (ToyVmm.Mmu.Grants.GrantProtocol); never the protocol of a VM's own address space.
    /// </summary>
    Grant,
}

/// <summary>
/// A fault/invalidate protocol: both halves of the agreement between a host
/// address space and the secondary MMUs subscribed to it (docs/DESIGN.md
/// "The fault / invalidate protocol").
/// </summary>
/// <remarks>
/// The host half says how a PTE-changing operation tells the subscribers
/// (<see cref="BeforePteChange"/> with its lock held, before it touches a PTE;
/// <see cref="AfterPteChange"/> once the PTEs hold their new values, before any
/// frame is freed). The secondary half says when a secondary fault that took a
/// page from get_user_pages must drop it and retry. The registry of the address
/// space holds the one protocol both halves read, so they cannot disagree.
/// </remarks>
public interface INotifierProtocol
{
    NotifierProtocol Kind { get; }

    /// <summary>
    /// True when the subscribers hear each host range at its start and its end
    /// (and can time it); false when they hear of single pages after the fact.
    /// </summary>
    bool SubscribersHearRanges { get; }

    /// <summary>Host half, before the PTEs of the range change. False: a non-blocking start was refused; change nothing.</summary>
    bool BeforePteChange(ReadOnlySpan<IMmuNotifierSubscriber> subscribers, in InvalidateRange range);

    /// <summary>Host half, after the PTEs of the range hold their new values.</summary>
    void AfterPteChange(ReadOnlySpan<IMmuNotifierSubscriber> subscribers, in InvalidateRange range);

    /// <summary>Secondary half, lock-free before get_user_pages: true to wait instead of faulting now (a hint).</summary>
    bool FaultShouldWait(InvalidateSequence sequence, ulong gfn);

    /// <summary>Secondary half, under the MMU lock after get_user_pages: true when the fault must drop its page and retry.</summary>
    bool FaultMustRetryLocked(InvalidateSequence sequence, ulong gfn, long sequenceAtStart);
}

/// <summary>The protocol strategies by kind.</summary>
public static class NotifierProtocols
{
    public static INotifierProtocol Of(NotifierProtocol kind) => kind switch
    {
        NotifierProtocol.Sequence => SequenceProtocol.Instance,
        NotifierProtocol.Broken2008 => Broken2008Protocol.Instance,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown notifier protocol"),
    };
}
