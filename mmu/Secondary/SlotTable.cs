namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// The VM's memory slots as an immutable sorted array, replaced whole on every
/// change (readers take the array once and use it lock-free).
/// </summary>
public sealed class SlotTable
{
    private MemorySlot[] _slots = [];   // sorted by GpaStart; replaced only by the owner under its slot lock

    public IReadOnlyList<MemorySlot> Slots => Volatile.Read(ref _slots);

    /// <summary>The slots now, for a walk that must see one slot set throughout (and allocate nothing).</summary>
    public ReadOnlySpan<MemorySlot> Current => Volatile.Read(ref _slots);

    public MemorySlot? Find(Gpa gpa)
    {
        var slots = Volatile.Read(ref _slots);
        int lo = 0, hi = slots.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            var s = slots[mid];
            if (gpa.Value < s.GpaStart.Value) hi = mid - 1;
            else if (gpa.Value - s.GpaStart.Value >= s.Bytes) lo = mid + 1;
            else return s;
        }
        return null;
    }

    /// <summary>Add a slot; it must not overlap another in guest-physical space.</summary>
    public void Add(MemorySlot slot)
    {
        if (slot.Bytes == 0 || (slot.Bytes & Page.OffsetMask) != 0 || slot.GpaStart.PageOffset != 0 || slot.HvaStart.PageOffset != 0)
            throw new ArgumentException($"slot {slot.Id} must be page-aligned and non-empty");
        var slots = Volatile.Read(ref _slots);
        foreach (var s in slots)
            if (slot.GpaStart.Value < s.GpaEnd.Value && s.GpaStart.Value < slot.GpaEnd.Value)
                throw new ArgumentException($"slot {slot.Id} [{slot.GpaStart}, {slot.GpaEnd}) overlaps slot {s.Id}");
        Volatile.Write(ref _slots, [.. slots.Append(slot).OrderBy(s => s.GpaStart.Value)]);
    }

    public bool Remove(int id)
    {
        var slots = Volatile.Read(ref _slots);
        var kept = slots.Where(s => s.Id != id).ToArray();
        Volatile.Write(ref _slots, kept);
        return kept.Length != slots.Length;
    }
}
