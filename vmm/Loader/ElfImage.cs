using ToyVmm.Mmu;

namespace ToyVmm.Loader;

/// <summary>One PT_LOAD segment that passed every rule (p_memsz &gt; 0).</summary>
/// <param name="Index">Index of the program header in the file, for messages.</param>
/// <param name="Start">Guest-physical load address (p_paddr).</param>
/// <param name="FileOffset">Offset of the file bytes.</param>
/// <param name="FileSize">Bytes copied from the file; the rest up to MemorySize is zero.</param>
/// <param name="MemorySize">Bytes the segment occupies in guest memory.</param>
/// <param name="Executable">PF_X is set.</param>
public readonly record struct ElfSegment(int Index, Gpa Start, ulong FileOffset, ulong FileSize, ulong MemorySize, bool Executable)
{
    /// <summary>First guest-physical byte after the segment.</summary>
    public Gpa End => Start.Add(MemorySize);

    public override string ToString() => $"segment {Index} [0x{Start.Value:x}, 0x{End.Value:x})";
}

/// <summary>
/// A guest binary checked against GUEST-ABI.md: its loadable segments (sorted by
/// address, disjoint, inside the load area) and its entry point.
/// </summary>
public sealed class ElfImage
{
    internal ElfImage(byte[] file, ulong entry, IReadOnlyList<ElfSegment> segments)
    {
        File = file;
        Entry = entry;
        Segments = segments;
    }

    /// <summary>The whole file the segments' bytes come from.</summary>
    public byte[] File { get; }

    /// <summary>e_entry: the RIP every vCPU starts at.</summary>
    public ulong Entry { get; }

    /// <summary>Loadable segments sorted by <see cref="ElfSegment.Start"/>.</summary>
    public IReadOnlyList<ElfSegment> Segments { get; }

    /// <summary>End of the highest segment rounded up to 4 KiB: the guest's free memory starts here.</summary>
    public Gpa HighestEnd => new((Segments[^1].End.Value + Page.OffsetMask) & ~Page.OffsetMask);

    /// <summary>The file bytes of <paramref name="segment"/> (p_filesz of them).</summary>
    public ReadOnlySpan<byte> FileBytes(ElfSegment segment) =>
        File.AsSpan((int)segment.FileOffset, (int)segment.FileSize);
}
