using System.Diagnostics;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Secondary;

// The MMU-notifier side of the EPT-like MMU: what the host calls before and
// after it changes its page tables. See the protocol diagram in EptMmu.cs.
public sealed unsafe partial class EptMmu
{
    public bool InvalidateRangeStart(in InvalidateRange range)
    {
        if (!GfnSpan(range.Start, range.End, out ulong first, out ulong last)) return true;
        if (range.MayBlock) _mmuLock.Enter();
        else if (!_mmuLock.TryEnter()) return false;   // "would block": the host backs off and retries
        long started = Stopwatch.GetTimestamp();
        try
        {
            _seq.BeginLocked(first, last);
            ulong holders = ZapLocked(range.Start, range.End);
            if (holders != 0) FlushVcpusLocked(holders);
        }
        finally { _mmuLock.Exit(); }
        Events?.InvalidateCompleted(Stopwatch.GetTimestamp() - started, range.Pages);
        return true;
    }

    public void InvalidateRangeEnd(in InvalidateRange range)
    {
        if (!GfnSpan(range.Start, range.End, out ulong first, out ulong last)) return;
        lock (_mmuLock) _seq.EndLocked(first, last);
    }

    /// <summary>
    /// The broken-2008 variant's <c>invalidate_page</c>: the host calls it after
    /// it has already cleared the PTE. It zaps, but nothing stops a fault that
    /// found the page earlier from installing it afterwards.
    /// </summary>
    public void InvalidatePage(Hva address)
    {
        lock (_mmuLock)
        {
            ulong holders = ZapLocked(address.PageBase, address.PageBase.Add(Page.Size));
            if (holders != 0) FlushVcpusLocked(holders);
        }
    }

    public bool ClearFlushYoung(Hva start, Hva end)
    {
        bool young;
        lock (_mmuLock)
        {
            ulong holders = 0;
            young = ClearYoungLocked(start, end, ref holders);
            if (young) FlushVcpusLocked(holders);  // later accesses must fill the TLB and set A again
        }
        return young;
    }

    public bool ClearYoung(Hva start, Hva end)
    {
        ulong holders = 0;
        lock (_mmuLock) return ClearYoungLocked(start, end, ref holders);
    }

    public bool TestYoung(Hva address)
    {
        foreach (var slot in _slots.Slots)
            if (slot.GfnsOf(address.PageBase, address.PageBase.Add(Page.Size), out ulong gfn, out _))
                return _ept.Lookup(gfn).IsAccessed;
        return false;
    }

    public void Release()
    {
        lock (_mmuLock)
        {
            foreach (var slot in _slots.Slots) ZapLocked(slot.HvaStart, slot.HvaEnd);
            FlushVcpusLocked(ulong.MaxValue);
        }
    }

    private bool GfnSpan(Hva start, Hva end, out ulong first, out ulong last)
    {
        first = ulong.MaxValue; last = 0;
        foreach (var slot in _slots.Slots)
        {
            if (!slot.GfnsOf(start, end, out ulong f, out ulong l)) continue;
            first = Math.Min(first, f); last = Math.Max(last, l);
        }
        return first <= last;
    }

    /// <summary>
    /// Zap every entry whose host page lies in [start, end); a dirty bit goes to
    /// the host page first. Returns the TLB holders of the zapped entries (0 when
    /// nothing was mapped: no vCPU needs to flush).
    /// </summary>
    private ulong ZapLocked(Hva start, Hva end)
    {
        Debug.Assert(_mmuLock.IsHeldByCurrentThread, "zapping needs the MMU lock");
        ulong holders = 0;
        foreach (var slot in _slots.Slots)
        {
            if (!slot.GfnsOf(start, end, out ulong first, out ulong last)) continue;
            var zap = new ZapVisitor(this);
            _ept.ForEachPresent(first, last, ref zap);
            holders |= zap.Holders;
        }
        return holders;
    }

    private bool ClearYoungLocked(Hva start, Hva end, ref ulong holders)
    {
        bool young = false;
        ulong h = 0;
        foreach (var slot in _slots.Slots)
        {
            if (!slot.GfnsOf(start, end, out ulong first, out ulong last)) continue;
            var aging = new ClearYoungVisitor(_ept);
            _ept.ForEachPresent(first, last, ref aging);
            young |= aging.Young; h |= aging.Holders;
        }
        holders |= h;
        return young;
    }

    /// <summary>
    /// Ask the vCPUs in <paramref name="holders"/> (EptEntry vCPU bits; every
    /// untracked vCPU always) to flush their TLBs and wait for each one that is
    /// in guest mode. A vCPU blocked on this lock has left guest mode first, so
    /// the wait cannot deadlock.
    /// </summary>
    private void FlushVcpusLocked(ulong holders)
    {
        var vcpus = _vcpus;
        Span<long> tickets = vcpus.Length <= 64 ? stackalloc long[vcpus.Length] : new long[vcpus.Length];
        for (int i = 0; i < vcpus.Length; i++)
        {
            ulong bit = EptEntry.VcpuBit(vcpus[i].Index);
            tickets[i] = bit == 0 || (holders & bit) != 0 ? vcpus[i].RequestFlush() : -1;
        }
        for (int i = 0; i < vcpus.Length; i++) vcpus[i].WaitForFlush(tickets[i]);
    }
}
