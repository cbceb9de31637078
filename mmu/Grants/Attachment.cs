using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Grants;

/// <summary>
/// A grant attached in one VM: [<see cref="Gpa"/>, +<see cref="Bytes"/>) of the attacher's
/// RAM mapped onto the first <see cref="Bytes"/> of the grant through <see cref="Mmu"/>,
/// a secondary MMU of the attacher's kind over the grant's <see cref="View"/>.
/// </summary>
public sealed record Attachment(Grant Grant, GrantView View, ISecondaryMmu Mmu, Gpa Gpa, ulong Bytes)
{
    /// <summary>The memory slot of <see cref="Mmu"/> that maps the attached range.</summary>
    public const int SlotId = 1;

    public Gpa End => Gpa.Add(Bytes);

    public bool Covers(Gpa gpa) => gpa.Value >= Gpa.Value && gpa.Value < End.Value;

    public bool Overlaps(Gpa start, ulong bytes) => start.Value < End.Value && Gpa.Value < start.Value + bytes;
}
