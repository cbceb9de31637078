namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// What a zapped secondary entry held, as the invariant checker needs it from
/// any secondary MMU: the guest page it translated (an EPT entry's gfn, or the
/// guest frame a shadow entry was derived from), the host frame, and the TLB
/// holder mask the shootdown flushes (<see cref="EptEntry.VcpuBit"/> bits, the
/// mask <see cref="IRemoteTlbFlush.FlushRemoteTlbsLocked"/> takes).
/// </summary>
public readonly record struct ZappedEntry(Gpa Page, Hfn Frame, ulong Holders)
{
    /// <summary>Whether vCPU <paramref name="vcpu"/> may have cached the frame: a holder, or a vCPU past the tracked ones.</summary>
    public bool MayBeHeldBy(int vcpu)
    {
        ulong bit = EptEntry.VcpuBit(vcpu);
        return bit == 0 || (Holders & bit) != 0;
    }
}
