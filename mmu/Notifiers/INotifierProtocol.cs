namespace ToyVmm.Mmu.Notifiers;

/// <summary>Which fault/invalidate protocol a host address space and its secondary MMUs follow.</summary>
public enum NotifierProtocol
{
    /// <summary>KVM's invalidate sequence (<see cref="SequenceProtocol"/>).</summary>
    Sequence,
    /// <summary>The 2008 order, kept to watch the race (<see cref="Broken2008Protocol"/>).</summary>
    Broken2008,
    /// <summary>No notifiers; every secondary mapping pins its page (pre-notifier KVM, <see cref="PinProtocol"/>).</summary>
    Pin,
    /// <summary>No notifiers and no pins: the host frees what secondary entries still map (<see cref="NoNotifierProtocol"/>).</summary>
    None,
}

/// <summary>
/// A fault/invalidate protocol: both halves of the agreement between a host
/// address space and the secondary MMUs subscribed to it (docs/DESIGN.md
/// "The fault / invalidate protocol", "Why notifiers exist").
/// </summary>
/// <remarks>
/// The host half says how a PTE-changing operation tells the subscribers
/// (<see cref="BeforePteChange"/> with its lock held, before it touches a PTE;
/// <see cref="AfterPteChange"/> once the PTEs hold their new values, before any
/// frame is freed) and whether they hear aging. The secondary half says when a
/// secondary fault that took a page from get_user_pages must drop it and retry,
/// and what a secondary entry does with that page's reference: give it back once
/// installed (the notifiers keep the entry coherent), or keep it as a pin until
/// the entry goes (<see cref="FaultInstalled"/>, <see cref="MappingDropped"/>).
/// The registry of the address space holds the one protocol both halves read,
/// so they cannot disagree. Every secondary MMU (EPT, shadow) calls the same
/// secondary half at the same points: after a fault installed an entry, and for
/// each entry it drops.
/// </remarks>
public interface INotifierProtocol
{
    NotifierProtocol Kind { get; }

    /// <summary>
    /// True when the subscribers hear <paramref name="range"/> at its start and its end
    /// (and can time it); false when they hear of single pages after the fact, or nothing.
    /// </summary>
    bool SubscribersHear(in InvalidateRange range);

    /// <summary>Host half: true when aging (clear_flush_young, clear_young, test_young) reaches the subscribers.</summary>
    bool SubscribersHearAging { get; }

    /// <summary>Host half, before the PTEs of the range change. False: a non-blocking start was refused; change nothing.</summary>
    bool BeforePteChange(ReadOnlySpan<IMmuNotifierSubscriber> subscribers, in InvalidateRange range);

    /// <summary>Host half, after the PTEs of the range hold their new values.</summary>
    void AfterPteChange(ReadOnlySpan<IMmuNotifierSubscriber> subscribers, in InvalidateRange range);

    /// <summary>Secondary half, lock-free before get_user_pages: true to wait instead of faulting now (a hint).</summary>
    bool FaultShouldWait(InvalidateSequence sequence, ulong gfn);

    /// <summary>Secondary half, under the MMU lock after get_user_pages: true when the fault must drop its page and retry.</summary>
    bool FaultMustRetryLocked(InvalidateSequence sequence, ulong gfn, long sequenceAtStart);

    /// <summary>
    /// Secondary half, under the MMU lock right after a fault's entry was written to map
    /// <paramref name="frame"/>: what becomes of the fault's get_user_pages reference. Under the
    /// lock, so that a zap of the entry (<see cref="MappingDropped"/>) always comes after it.
    /// <paramref name="newMapping"/> is true when the entry did not map this frame before the
    /// fault (a fresh install or a replaced frame), false when it only gained permissions or
    /// bits. Returns the references the MMU's entries now hold beyond before: 1 when the
    /// entry keeps it (a pin), 0 when it was given back.
    /// </summary>
    int FaultInstalled(IUserPageReferences pages, Hfn frame, PageRelease how, bool newMapping);

    /// <summary>
    /// Secondary half, under the MMU lock: an entry that mapped <paramref name="frame"/> is gone
    /// (zapped, or replaced by a fault); its dirty bit has been handed over already. Returns the
    /// change in references the entries hold: -1 when the entry held a pin, else 0.
    /// </summary>
    /// <remarks>
    /// Giving a reference back under the MMU lock (here or in <see cref="FaultInstalled"/>) is
    /// allowed by the lock order: it frees the frame only when the host has already let go of
    /// it (no PTE maps it), and a free takes only leaf locks (LRU, allocator, the checker's).
    /// </remarks>
    int MappingDropped(IUserPageReferences pages, Hfn frame);
}

/// <summary>The protocol strategies by kind, and their names on the command line.</summary>
public static class NotifierProtocols
{
    /// <summary>The command-line names (<c>--notifier-protocol</c>), in the order of <see cref="NotifierProtocol"/>.</summary>
    public static IReadOnlyList<string> Names { get; } = ["sequence", "broken-2008", "pin", "none"];

    public static INotifierProtocol Of(NotifierProtocol kind) => kind switch
    {
        NotifierProtocol.Sequence => SequenceProtocol.Instance,
        NotifierProtocol.Broken2008 => Broken2008Protocol.Instance,
        NotifierProtocol.Pin => PinProtocol.Instance,
        NotifierProtocol.None => NoNotifierProtocol.Instance,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown notifier protocol"),
    };

    /// <summary>The command-line name of <paramref name="kind"/>.</summary>
    public static string NameOf(NotifierProtocol kind) =>
        (uint)kind < (uint)Names.Count ? Names[(int)kind] : throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown notifier protocol");

    /// <summary>The protocol a command-line name stands for (exact, lower case).</summary>
    public static bool TryParse(string name, out NotifierProtocol kind)
    {
        for (int i = 0; i < Names.Count; i++)
            if (Names[i] == name) { kind = (NotifierProtocol)i; return true; }
        kind = default;
        return false;
    }
}
