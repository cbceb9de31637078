namespace ToyVmm.Mmu.Secondary;

// The per-entry work of the notifier's range walks (EptMmu.Notifier.cs), as
// struct visitors so that EptTable.ForEachPresent allocates nothing. Both run
// with _mmuLock held by the walk's caller.
public sealed unsafe partial class EptMmu
{
    /// <summary>Zaps each entry it visits; collects the TLB holders of what it zapped.</summary>
    private struct ZapVisitor(EptMmu mmu) : IEptVisitor
    {
        /// <summary>EptEntry vCPU bits of the zapped entries, plus Read once anything was zapped.</summary>
        public ulong Holders;

        public void Visit(ulong gfn, EptEntry entry)
        {
            var old = mmu._ept.ZapLocked(gfn);
            if (!old.IsPresent) return;
            // The page was written through the secondary MMU: the host must not drop it as clean.
            if (old.IsDirty) mmu._host.SetPageDirty(old.Frame);
            mmu.Checker?.OnZap(mmu, Gpa.FromPageNumber(gfn), old);
            Holders |= old.Vcpus | EptEntry.Read;   // Read: something was zapped
        }
    }

    /// <summary>Clears the accessed bit of each entry it visits; collects whether any was set and its holders.</summary>
    private struct ClearYoungVisitor(EptTable ept) : IEptVisitor
    {
        public bool Young;
        public ulong Holders;

        public void Visit(ulong gfn, EptEntry entry)
        {
            if (ept.TestAndClearAccessed(gfn)) { Young = true; Holders |= entry.Vcpus | EptEntry.Read; }
        }
    }
}
