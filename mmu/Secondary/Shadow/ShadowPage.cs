namespace ToyVmm.Mmu.Secondary.Shadow;

// Locking: everything here is written only under the owning ShadowMmu's
// _mmuLock. vCPUs read Children and Entries lock-free (Volatile.Read) and only
// OR accessed, dirty and TLB-holder bits into a leaf entry they saw present
// (as EPT entries). A zapped page is marked invalid, unlinked from its parents
// and has its leaf entries cleared, and the flush that follows waits for any
// vCPU that read it before; a vCPU still holding a reference to it reads empty
// entries and misses. Pages are managed objects: nothing is freed under a reader.

/// <summary>
/// One shadow page: the 512 entries shadowing one guest page-table page (or,
/// for a direct page, one guest large page) for one role.
/// </summary>
public sealed class ShadowPage
{
    public const int Entries = 512;

    public ShadowPage(ulong gfn, ShadowRole role)
    {
        Gfn = gfn;
        Role = role;
        if (role.Level == 1) { Leaf = new ulong[Entries]; LeafGfn = new ulong[Entries]; }
        else Children = new ShadowPage?[Entries];
    }

    /// <summary>The guest page-table frame shadowed (for a direct page: the first guest frame it maps).</summary>
    public ulong Gfn { get; }
    public ShadowRole Role { get; }

    /// <summary>Level 1: the leaf entries (<see cref="ShadowEntry"/> bits over <see cref="EptEntry"/>'s).</summary>
    internal readonly ulong[]? Leaf;
    /// <summary>Level 1: the guest frame each present leaf entry maps.</summary>
    internal readonly ulong[]? LeafGfn;
    /// <summary>Levels 2-4: the shadow page each entry links to.</summary>
    internal readonly ShadowPage?[]? Children;

    /// <summary>Where this page is linked from (parent, index). Guarded by the MMU lock.</summary>
    internal readonly List<(ShadowPage Parent, int Index)> Parents = [];
    /// <summary>Present leaf entries or linked children. Guarded by the MMU lock.</summary>
    internal int Used;
    /// <summary>Level 1: the id the reverse map names its leaves by (ShadowRmap); 0 when it has none. Guarded by the MMU lock.</summary>
    internal int Id;
    /// <summary>A root in the root cache. Guarded by the MMU lock.</summary>
    internal bool IsRoot;
    /// <summary>For the root cache's least-recently-used choice. Guarded by the MMU lock.</summary>
    internal long LastUsed;
    private volatile bool _valid = true;

    /// <summary>False once zapped: a vCPU that still holds the page misses and fills again.</summary>
    public bool Valid { get => _valid; internal set => _valid = value; }

    public override string ToString() => $"shadow page gfn:0x{Gfn:x} {Role}";
}
