namespace ToyVmm.Mmu.Secondary.Shadow;

/// <summary>
/// Bits of a shadow leaf entry (8 bytes). The frame, present (<see cref="EptEntry.Read"/>),
/// writable, accessed, dirty and TLB-holder bits sit where an <see cref="EptEntry"/> has them, so
/// the holder mask, the dirty hand-over and the checker work the same; the guest's effective
/// permissions of the mapping sit in bits the EPT entry does not use.
/// </summary>
/// <remarks>
/// <see cref="EptEntry.Write"/> here means "the vCPU may write through this entry without a
/// trap": the guest allows the write and its dirty bit is set, the host granted a write, and
/// the guest frame is not a write-protected page table.
/// </remarks>
public static class ShadowEntry
{
    /// <summary>The guest entries on the path all have U/S set.</summary>
    public const ulong GuestUser = 1UL << 4;
    /// <summary>The guest entries on the path all have R/W set.</summary>
    public const ulong GuestWrite = 1UL << 5;
    /// <summary>A guest entry on the path has NX set (with EFER.NXE).</summary>
    public const ulong GuestNoExec = 1UL << 6;

    /// <summary>Whether <paramref name="raw"/> grants <paramref name="kind"/> at the given privilege and CR0.WP, as the guest walk decides.</summary>
    public static bool Permits(ulong raw, AccessKind kind, bool user, bool wp)
    {
        if ((raw & EptEntry.Read) == 0) return false;
        if (user && (raw & GuestUser) == 0) return false;
        return kind switch
        {
            AccessKind.Read => true,
            AccessKind.Write => (raw & EptEntry.Write) != 0 && ((raw & GuestWrite) != 0 || (!user && !wp)),
            _ => (raw & GuestNoExec) == 0,
        };
    }
}
