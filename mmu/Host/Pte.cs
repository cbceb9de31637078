namespace ToyVmm.Mmu.Host;

/// <summary>
/// A host page-table entry, 8 bytes (pinned by a test). Present: frame number,
/// writable, accessed, dirty. Not present and non-zero: a swap entry naming a
/// slot. Zero: nothing there (the next touch zero-fills).
/// </summary>
/// <remarks>
/// Layout: bit 0 present, bit 1 writable, bit 5 accessed, bit 6 dirty,
/// bit 62 swap (only when not present), bits 12..51 frame or slot number.
/// </remarks>
public readonly record struct Pte(ulong Raw)
{
    public const ulong PresentBit = 1UL << 0;
    public const ulong WritableBit = 1UL << 1;
    public const ulong AccessedBit = 1UL << 5;
    public const ulong DirtyBit = 1UL << 6;
    public const ulong SwapBit = 1UL << 62;
    private const ulong NumberMask = ((1UL << 40) - 1) << 12;

    public static readonly Pte None = new(0);

    public static Pte Present(uint frame, bool writable, bool accessed, bool dirty) =>
        new(((ulong)frame << 12) | PresentBit | (writable ? WritableBit : 0) | (accessed ? AccessedBit : 0) | (dirty ? DirtyBit : 0));

    public static Pte Swap(uint slot) => new(((ulong)slot << 12) | SwapBit);

    public bool IsNone => Raw == 0;
    public bool IsPresent => (Raw & PresentBit) != 0;
    public bool IsSwap => (Raw & (PresentBit | SwapBit)) == SwapBit;
    public bool Writable => (Raw & WritableBit) != 0;
    public bool Accessed => (Raw & AccessedBit) != 0;
    public bool Dirty => (Raw & DirtyBit) != 0;
    public uint Frame => (uint)((Raw & NumberMask) >> 12);
    public uint SwapSlot => (uint)((Raw & NumberMask) >> 12);

    public override string ToString() =>
        IsPresent ? $"pte:hfn 0x{Frame:x}{(Writable ? " W" : "")}{(Accessed ? " A" : "")}{(Dirty ? " D" : "")}"
        : IsSwap ? $"pte:swap {SwapSlot}" : "pte:none";
}
