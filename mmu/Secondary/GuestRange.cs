namespace ToyVmm.Mmu.Secondary;

/// <summary>The one rule for a guest-physical range a hypercall or the VMM asks to act on.</summary>
public static class GuestRange
{
    /// <summary>-EINVAL: the answer to a range that breaks <see cref="Check"/> (GUEST-ABI.md).</summary>
    public const long Invalid = -22;

    /// <summary>True when [start, start + bytes) is page-aligned and inside guest RAM [0, ramBytes).</summary>
    public static bool Check(Gpa start, ulong bytes, ulong ramBytes) =>
        start.PageOffset == 0 && (bytes & Page.OffsetMask) == 0 &&
        start.Value <= ramBytes && bytes <= ramBytes - start.Value;

    /// <summary>True when every entry of a vectored request is one whole page inside guest RAM (<see cref="Check"/> of one page each).</summary>
    public static bool CheckPages(ReadOnlySpan<Gpa> pages, ulong ramBytes)
    {
        foreach (var page in pages)
            if (!Check(page, Page.Size, ramBytes)) return false;
        return true;
    }
}
