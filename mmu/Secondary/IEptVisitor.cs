namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// What <see cref="EptTable.ForEachPresent{TVisitor}"/> calls for each present
/// entry. Implement it on a struct: the walk is specialised for the struct, so
/// it allocates nothing and the call can be inlined (a lambda cost a closure per
/// walk; InvalidateRangeSizeBenchmarks).
/// </summary>
public interface IEptVisitor
{
    /// <summary>
    /// Visit the present entry of <paramref name="gfn"/>. The visitor may zap or
    /// change this entry (with the MMU lock held), but no other.
    /// </summary>
    void Visit(ulong gfn, EptEntry entry);
}
