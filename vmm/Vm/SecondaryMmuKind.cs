namespace ToyVmm.Vm;

/// <summary>Which secondary MMU backs a host-backed VM (<c>--mmu</c>).</summary>
public enum SecondaryMmuKind
{
    /// <summary>The EPT-like MMU: guest-physical to host frame; the guest walk stays in the vCPU.</summary>
    Ept = 0,
    /// <summary>The shadow MMU: guest-virtual to host frame through shadow page tables.</summary>
    Shadow,
}
