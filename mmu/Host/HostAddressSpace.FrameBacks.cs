namespace ToyVmm.Mmu.Host;

public sealed partial class HostAddressSpace
{
    /// <summary>
    /// For invariant checkers: true when <paramref name="frame"/> is allocated
    /// and the host PTE at <paramref name="address"/> maps it now.
    /// </summary>
    /// <remarks>
    /// Lock-free (a racy read of the PTE), so that a secondary MMU may call it
    /// under its own MMU lock, which nests inside the address-space lock
    /// (LOCKING.md). Under the sequence protocol no PTE of a page changes while
    /// a secondary fault installs it, so the read is exact where it matters.
    /// </remarks>
    public bool FrameBacks(Hfn frame, Hva address)
    {
        if (frame.Value >= (uint)_frames.Count || address.PageNumber >= HostPageTable.MaxVpn) return false;
        var pte = _pt.GetRacy(address.PageNumber);
        return pte.IsPresent && pte.Frame == frame.Value && !_frames.Has(frame.Value, FrameFlags.Free | FrameFlags.Retired);
    }
}
