namespace ToyVmm.Mmu;

// One type per address kind (docs/DESIGN.md "Address kinds"). No implicit
// conversions and no operators across kinds: arithmetic is named, so a
// guest-physical address can never be added to a host-virtual one by accident.

/// <summary>Size constants of the 4 KiB page every layer works in.</summary>
public static class Page
{
    public const int Shift = 12;
    public const ulong Size = 1UL << Shift;
    public const ulong OffsetMask = Size - 1;
}

/// <summary>A guest-virtual address.</summary>
public readonly record struct Gva(ulong Value)
{
    public ulong PageNumber => Value >> Page.Shift;
    public ulong PageOffset => Value & Page.OffsetMask;
    public Gva PageBase => new(Value & ~Page.OffsetMask);
    public Gva Add(ulong bytes) => new(unchecked(Value + bytes));
    public override string ToString() => $"gva:0x{Value:x}";
}

/// <summary>A guest-physical address.</summary>
public readonly record struct Gpa(ulong Value)
{
    public ulong PageNumber => Value >> Page.Shift;
    public ulong PageOffset => Value & Page.OffsetMask;
    public Gpa PageBase => new(Value & ~Page.OffsetMask);
    public Gpa Add(ulong bytes) => new(checked(Value + bytes));
    public ulong OffsetFrom(Gpa start) => checked(Value - start.Value);
    public static Gpa FromPageNumber(ulong gfn) => new(gfn << Page.Shift);
    public override string ToString() => $"gpa:0x{Value:x}";
}

/// <summary>A host-virtual address inside a simulated host address space.</summary>
public readonly record struct Hva(ulong Value)
{
    public ulong PageNumber => Value >> Page.Shift;
    public ulong PageOffset => Value & Page.OffsetMask;
    public Hva PageBase => new(Value & ~Page.OffsetMask);
    public Hva Add(ulong bytes) => new(checked(Value + bytes));
    public ulong OffsetFrom(Hva start) => checked(Value - start.Value);
    public static Hva FromPageNumber(ulong vpn) => new(vpn << Page.Shift);
    public override string ToString() => $"hva:0x{Value:x}";
}

/// <summary>A host frame number: the index of a 4 KiB frame in the host frame pool.</summary>
public readonly record struct Hfn(uint Value)
{
    public static readonly Hfn None = new(uint.MaxValue);
    public bool IsNone => Value == uint.MaxValue;
    public override string ToString() => IsNone ? "hfn:none" : $"hfn:0x{Value:x}";
}
