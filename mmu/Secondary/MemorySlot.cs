namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// A memory slot: guest-physical [GpaStart, GpaStart + Bytes) backed by the
/// host-virtual range [HvaStart, HvaStart + Bytes) of the VM's host address space.
/// </summary>
public sealed record MemorySlot(int Id, Gpa GpaStart, ulong Bytes, Hva HvaStart, bool ReadOnly = false)
{
    public Gpa GpaEnd => GpaStart.Add(Bytes);
    public Hva HvaEnd => HvaStart.Add(Bytes);

    public Hva ToHva(Gpa gpa) => HvaStart.Add(gpa.OffsetFrom(GpaStart));

    /// <summary>
    /// The guest frame numbers [first, last] whose host pages fall in the
    /// host-virtual range [start, end), or false when the slot and the range
    /// do not meet.
    /// </summary>
    public bool GfnsOf(Hva start, Hva end, out ulong firstGfn, out ulong lastGfn)
    {
        ulong lo = Math.Max(start.Value, HvaStart.Value), hi = Math.Min(end.Value, HvaEnd.Value);
        if (lo >= hi) { firstGfn = 1; lastGfn = 0; return false; }
        firstGfn = (GpaStart.Value + (lo - HvaStart.Value)) >> Page.Shift;
        lastGfn = (GpaStart.Value + (hi - 1 - HvaStart.Value)) >> Page.Shift;
        return true;
    }
}
