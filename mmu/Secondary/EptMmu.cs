using System.Diagnostics;

namespace ToyVmm.Mmu.Secondary;

// Locking and the fault/invalidate protocol: SecondaryMmuCore.cs. Everything
// EptMmu adds runs under the core's _mmuLock, but the lock-free test_young
// read; vCPUs read the table lock-free and only OR in accessed, dirty and
// holder bits.

/// <summary>
/// The EPT-like secondary MMU: guest-physical page to host frame, populated by
/// secondary faults through the host address space and torn down by its MMU
/// notifier callbacks. All of it is the core's (<see cref="SecondaryMmuCore"/>)
/// but for what an entry is: one entry per guest frame in the core's table.
/// </summary>
public sealed unsafe class EptMmu : SecondaryMmuCore
{
    /// <summary>
    /// An MMU over <paramref name="host"/> with one slot: guest-physical [0, <paramref name="ramBytes"/>)
    /// at <paramref name="ramHva"/>. It follows the protocol of the host's notifier registry.
    /// </summary>
    public EptMmu(IHostMemory host, ulong ramBytes, Hva ramHva) : base(host, ramBytes, ramHva) => Register();

    public EptTable Table => _gfnTable;

    private protected override bool InstallDirectLocked(VcpuLink vcpu, Gpa gpa, Hfn frame, bool write, out bool newMapping)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "installing needs the MMU lock");
        ulong gfn = gpa.PageNumber;
        var entry = _gfnTable.Lookup(gfn);
        ulong used = EptEntry.Accessed | (write ? EptEntry.Dirty : 0) | EptEntry.VcpuBit(vcpu.Index);
        bool same = entry.IsPresent && entry.Frame == frame;
        newMapping = !same;
        if (same && (!write || entry.IsWritable))
        {
            _gfnTable.SetLocked(gfn, entry.With(used));
            return true;
        }
        var fresh = EptEntry.Make(frame, writable: write || (same && entry.IsWritable), executable: true)
            .With(used | (same ? entry.Raw & (EptEntry.VcpuMask | EptEntry.Dirty) : 0));
        Checker?.OnInstall(_host, gpa.PageBase, _slots.Find(gpa)!.ToHva(gpa.PageBase), frame);
        _gfnTable.SetLocked(gfn, fresh);
        // An entry of another frame is replaced (only under broken-2008): whatever it held goes with it.
        if (entry.IsPresent && !same) DropMappingLocked(entry.Frame);
        return true;
    }

    /// <summary>Zap every present entry of guest frames [first, last]; nothing is derived from the pages' bytes, so <paramref name="contentsChange"/> changes nothing.</summary>
    private protected override ulong ZapRangeLocked(ulong firstGfn, ulong lastGfn, bool contentsChange)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "zapping needs the MMU lock");
        var zap = new ZapVisitor(this);
        _gfnTable.ForEachPresent(firstGfn, lastGfn, ref zap);
        return zap.Holders;
    }

    private protected override ulong AgeRange(ulong firstGfn, ulong lastGfn, bool clear, ref bool young)
    {
        if (!clear)
        {
            // test_young, lockless: one page.
            young |= _gfnTable.Lookup(firstGfn).IsAccessed;
            return 0;
        }
        var aging = new ClearYoungVisitor(_gfnTable);
        _gfnTable.ForEachPresent(firstGfn, lastGfn, ref aging);
        young |= aging.Young;
        return aging.Holders;
    }

    private protected override bool AgesLockless => true;

    /// <summary>Zaps each entry it visits; collects the TLB holders of what it zapped.</summary>
    private struct ZapVisitor(EptMmu mmu) : IEptVisitor
    {
        /// <summary>EptEntry vCPU bits of the zapped entries, plus Read once anything was zapped.</summary>
        public ulong Holders;

        public void Visit(ulong gfn, EptEntry entry)
        {
            var old = mmu._gfnTable.ZapLocked(gfn);
            if (!old.IsPresent) return;
            // The page was written through the secondary MMU: the host must not drop it as clean.
            if (old.IsDirty) mmu._host.SetPageDirty(old.Frame);
            mmu.Checker?.OnZap(mmu._host, new ZappedEntry(Gpa.FromPageNumber(gfn), old.Frame, old.Vcpus));
            mmu.DropMappingLocked(old.Frame);   // a pin, if the protocol keeps one, goes back
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
