using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Secondary;

// The work of the notifier walks (EptMmu.Notifier.cs): slot-range handlers for
// the shared SlotRangeWalker, and the per-entry visitors they run over the EPT
// table. All are structs so that a walk allocates nothing; all but
// TestYoungHandler run with _mmuLock held by the walker.
public sealed unsafe partial class EptMmu
{
    /// <summary>invalidate_range_start: count the range in progress (on-lock), then zap each slot's part.</summary>
    private readonly struct InvalidateStartHandler(EptMmu mmu) : IGfnRangeHandler
    {
        public void OnLock(ulong firstGfn, ulong lastGfn) => mmu._seq.BeginLocked(firstGfn, lastGfn);
        public void OnLockBatch(ulong firstGfn, ulong lastGfn, ReadOnlySpan<ulong> gfns) => mmu._seq.BeginLocked(firstGfn, lastGfn, gfns);

        public ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn) => mmu.ZapGfnsLocked(firstGfn, lastGfn);
    }

    /// <summary>invalidate_range_end: move the sequence on and drop the range (on-lock); nothing per slot.</summary>
    private readonly struct InvalidateEndHandler(InvalidateSequence seq) : IGfnRangeHandler
    {
        public void OnLock(ulong firstGfn, ulong lastGfn) => seq.EndLocked(firstGfn, lastGfn);
        public void OnLockBatch(ulong firstGfn, ulong lastGfn, ReadOnlySpan<ulong> gfns) => seq.EndLocked(firstGfn, lastGfn, gfns);
        public ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn) => 0;
    }

    /// <summary>Zap each slot's part (invalidate_page, slot removal).</summary>
    private readonly struct ZapHandler(EptMmu mmu) : IGfnRangeHandler
    {
        public void OnLock(ulong firstGfn, ulong lastGfn) { }

        public ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn) => mmu.ZapGfnsLocked(firstGfn, lastGfn);
    }

    /// <summary>release: zap every slot, have every vCPU flush; counts the host pages the slots cover (for the teardown figure).</summary>
    private struct ReleaseHandler(EptMmu mmu) : IGfnRangeHandler
    {
        public ulong Pages;
        public ulong FirstPage = ulong.MaxValue;

        public void OnLock(ulong firstGfn, ulong lastGfn) { }

        public ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn)
        {
            mmu.ZapGfnsLocked(firstGfn, lastGfn);
            Pages += slot.Bytes >> Page.Shift;
            FirstPage = Math.Min(FirstPage, slot.HvaStart.PageNumber);
            return ulong.MaxValue;
        }
    }

    /// <summary>clear_young / clear_flush_young: clear the accessed bits; the holders of young entries flush.</summary>
    private struct ClearYoungHandler(EptTable ept) : IGfnRangeHandler
    {
        public bool Young;

        public void OnLock(ulong firstGfn, ulong lastGfn) { }

        public ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn)
        {
            var aging = new ClearYoungVisitor(ept);
            ept.ForEachPresent(firstGfn, lastGfn, ref aging);
            Young |= aging.Young;
            return aging.Holders;
        }
    }

    /// <summary>test_young, lockless: a racy read of the accessed bit is all aging needs.</summary>
    private struct TestYoungHandler(EptTable ept) : IGfnRangeHandler
    {
        public bool Young;

        public void OnLock(ulong firstGfn, ulong lastGfn) { }

        public ulong Handle(MemorySlot slot, ulong firstGfn, ulong lastGfn)
        {
            Young |= ept.Lookup(firstGfn).IsAccessed;
            return 0;
        }
    }

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
            mmu.Checker?.OnZap(mmu._host, new ZappedEntry(Gpa.FromPageNumber(gfn), old.Frame, old.Vcpus));
            mmu.DropMappingLocked(old);   // a pin, if the protocol keeps one, goes back
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
