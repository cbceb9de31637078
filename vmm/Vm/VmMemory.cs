using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Vm;

/// <summary>
/// Guest memory as one VM holds it: the access side its vCPUs and its loader
/// translate through, and the management side its devices act on.
/// </summary>
/// <param name="Access">What vCPUs translate through (a secondary MMU, or flat memory).</param>
/// <param name="Management">What the hypercalls and the VMM act on (slots, PAGEOUT/DISCARD, contents-replaced).</param>
/// <param name="Owner">Disposed with the VM; null when someone else owns the memory (e.g. <see cref="HostBackedMemory"/>).</param>
/// <param name="Grants">Where the grant hypercalls go; null when there is no host to share through (flat memory).</param>
public sealed record VmMemory(IGuestMemory Access, IGuestMemoryManagement Management, IDisposable? Owner = null, ToyVmm.Mmu.Grants.GrantVm? Grants = null)
{
    /// <summary>Flat guest RAM with no host underneath, owned by the VM.</summary>
    public static VmMemory Flat(ulong ramBytes)
    {
        var flat = new FlatGuestMemory(ramBytes);
        return new VmMemory(flat, flat, flat);
    }
}
