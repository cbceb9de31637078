namespace ToyVmm.Mmu.Notifiers;

/// <summary>
/// A secondary MMU (EPT, shadow MMU, a device) that mirrors part of a host
/// address space and must be told before the host changes it.
/// </summary>
/// <remarks>
/// Call-order contract, for every host operation that clears or changes PTEs
/// under the <c>sequence</c> protocol (<see cref="SequenceProtocol"/>):
/// <code>
///   InvalidateRangeStart(r)   -- before the host touches any PTE in r
///   ... host clears/changes PTEs, flushes, and only then frees frames ...
///   InvalidateRangeEnd(r)     -- after the PTEs hold their new values
/// </code>
/// Between start and end the subscriber must not establish a new mapping of
/// any page in r (KVM's invalidate-in-progress count enforces that); for a batch
/// (<see cref="InvalidateRange.BatchPages"/>), of any listed page. The end carries
/// the same list as its start. Starts and ends nest and overlap across threads;
/// each start is paired with one end.
/// <para>
/// Only start and end are required. The other callbacks have defaults for a
/// subscriber that keeps no accessed bits (young: "not used"), that follows
/// no teaching protocol (<see cref="InvalidatePage"/>: nothing), or that has
/// nothing to drop at teardown beyond what start already zapped.
/// </para>
/// </remarks>
public interface IMmuNotifierSubscriber
{
    /// <summary>
    /// Tear down every secondary mapping of the range. Returns false only when
    /// <see cref="InvalidateRange.MayBlock"/> is false and the subscriber would
    /// have to block; the host operation then backs off and retries later.
    /// </summary>
    bool InvalidateRangeStart(in InvalidateRange range);

    /// <summary>The host PTEs of the range hold their new values; faults may install mappings again.</summary>
    void InvalidateRangeEnd(in InvalidateRange range);

    /// <summary>
    /// The 2008 <c>invalidate_page</c>, called only by the teaching protocol
    /// <see cref="Broken2008Protocol"/>: the host calls it after it has already
    /// cleared the PTE.
    /// </summary>
    void InvalidatePage(Hva address) { }

    /// <summary>Clear the accessed bits of the range's secondary mappings and flush; true if any was set.</summary>
    bool ClearFlushYoung(Hva start, Hva end) => false;

    /// <summary>Clear the accessed bits without a flush (cheaper, used by aging); true if any was set.</summary>
    bool ClearYoung(Hva start, Hva end) => false;

    /// <summary>True if the secondary mapping of the page was accessed since the bit was last cleared.</summary>
    bool TestYoung(Hva address) => false;

    /// <summary>The address space is being torn down: drop every secondary mapping now.</summary>
    void Release() { }
}
