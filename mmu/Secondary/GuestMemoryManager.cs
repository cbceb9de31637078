namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// The VMM's side of guest memory over a host address space: the memory slots
/// (changed through the secondary MMU, which must drop their mappings), and the
/// PAGEOUT/DISCARD hypercalls, which call the host address space directly.
/// </summary>
/// <remarks>
/// The hypercalls go one way, as a userspace VMM's madvise does:
/// <code>
///   Devices -> GuestMemoryManager -> host address space (madvise)
///                                      -> notifier start/end -> secondary MMU zaps
/// </code>
/// The manager checks the range once (<see cref="GuestRange.Check"/>), cuts it
/// at slot boundaries into host-virtual ranges and hands each to the host; it
/// never asks the secondary MMU to translate them.
/// </remarks>
public sealed class GuestMemoryManager(IHostMadvise host, ISecondaryMmu mmu) : IGuestMemoryManagement
{
    public ulong RamBytes => mmu.RamBytes;

    /// <summary>The slots now.</summary>
    public SlotTable Slots => mmu.Slots;

    public event Action<Gpa, ulong>? ContentsReplaced;

    /// <summary>Add a memory slot (waits while invalidations are in flight).</summary>
    public void AddSlot(MemorySlot slot) => mmu.AddSlot(slot);

    /// <summary>Remove a memory slot; its mappings are zapped and the vCPUs flushed first.</summary>
    public bool RemoveSlot(int id) => mmu.RemoveSlot(id);

    public long PageOut(Gpa start, ulong bytes) => Advise(start, bytes, discard: false);

    public long PageOutPages(ReadOnlySpan<Gpa> pages)
    {
        if (!GuestRange.CheckPages(pages, RamBytes)) return GuestRange.Invalid;
        if (pages.IsEmpty) return 0;
        // Each page to its slot's host page; pages no slot covers are skipped, as a range's are.
        var hvas = new Hva[pages.Length];
        int n = 0;
        foreach (var page in pages)
            if (mmu.Slots.Find(page) is { } slot) hvas[n++] = slot.ToHva(page);
        return n == 0 ? 0 : host.PageOutPages(hvas.AsSpan(0, n));
    }

    public long Discard(Gpa start, ulong bytes)
    {
        long pages = Advise(start, bytes, discard: true);
        if (pages != GuestRange.Invalid && bytes != 0) ContentsReplaced?.Invoke(start, bytes);
        return pages;
    }

    private long Advise(Gpa start, ulong bytes, bool discard)
    {
        if (!GuestRange.Check(start, bytes, RamBytes)) return GuestRange.Invalid;
        long pages = 0;
        ulong end = start.Value + bytes;
        foreach (var slot in mmu.Slots.Current)
        {
            ulong lo = Math.Max(start.Value, slot.GpaStart.Value), hi = Math.Min(end, slot.GpaEnd.Value);
            if (lo >= hi) continue;
            var hva = slot.ToHva(new Gpa(lo));
            pages += discard ? host.DontNeed(hva, hi - lo) : host.PageOut(hva, hi - lo);
        }
        return pages;
    }
}
