namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// A secondary MMU (the EPT-like MMU, or the shadow MMU): guest memory
/// access for vCPUs over a host address space, kept coherent through that
/// space's MMU notifiers, with the memory slots that say where each
/// guest-physical range lives in it.
/// </summary>
/// <remarks>
/// The VMM changes slots through <see cref="GuestMemoryManager"/>, never while
/// an invalidation is in flight; the MMU drops every mapping of a removed slot
/// and flushes the vCPUs before the slot is forgotten. PAGEOUT and DISCARD do
/// not pass through the MMU: the manager calls the host address space, and the
/// MMU hears of the change through its notifier like of any other.
/// </remarks>
public interface ISecondaryMmu : IGuestMemory
{
    /// <summary>The slots now (read lock-free; replaced whole on every change).</summary>
    SlotTable Slots { get; }

    /// <summary>Add a memory slot (waits while invalidations are in flight).</summary>
    void AddSlot(MemorySlot slot);

    /// <summary>Remove a memory slot: zap its mappings, flush the vCPUs, forget it. False if there is no such slot.</summary>
    bool RemoveSlot(int id);
}
