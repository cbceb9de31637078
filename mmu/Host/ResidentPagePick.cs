namespace ToyVmm.Mmu.Host;

/// <summary>Which end of the host's LRU <see cref="HostAddressSpace.PickResidentPages"/> takes pages from.</summary>
public enum ResidentPagePick
{
    /// <summary>
    /// The pages reclaim would take first: inactive tail toward head, then active
    /// tail toward head; pages with an accessed bit set go last.
    /// </summary>
    Cold,
    /// <summary>The pages most recently used: the opposite order, pages with an accessed bit set first.</summary>
    Hot,
}
