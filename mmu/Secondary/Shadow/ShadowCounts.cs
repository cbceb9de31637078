namespace ToyVmm.Mmu.Secondary.Shadow;

/// <summary>What the shadow MMU did over a run (a racy snapshot; written under its MMU lock).</summary>
public struct ShadowCounts
{
    /// <summary>Guest writes to write-protected page tables, trapped and emulated.</summary>
    public long WriteProtectTraps;
    /// <summary>Shadow entries (leaf mappings and links to child pages) zapped by those writes.</summary>
    public long TrapZaps;
    /// <summary>Guest page-table frames that became write-protected (a first shadow page for them).</summary>
    public long WriteProtects;
    /// <summary>Shadow pages created.</summary>
    public long PagesCreated;
    /// <summary>Shadow pages zapped (orphaned by a trapped write, evicted with a root, invalidated, torn down).</summary>
    public long PagesZapped;
    /// <summary>Of those zapped, the ones recycled because the live pages reached the bound (<c>ShadowMmu.MaxPages</c>).</summary>
    public long PagesRecycled;
    /// <summary>Shadow pages alive now.</summary>
    public long PagesLive;
    /// <summary>Roots in the root cache now.</summary>
    public long RootsCached;
    /// <summary>Fills that found their root in the cache (a CR3 switch back to a known address space).</summary>
    public long RootHits;
    /// <summary>Roots built (a CR3 never seen, or evicted).</summary>
    public long RootMisses;
    /// <summary>Fills that installed a leaf entry.</summary>
    public long Fills;
    /// <summary>Fills sent back to walk again because the guest tables changed under them.</summary>
    public long FillRetries;

    /// <summary>The counters by name, for the report's and the table's shadow section.</summary>
    public readonly IEnumerable<KeyValuePair<string, long>> ByName()
    {
        yield return new("writeProtectTraps", WriteProtectTraps);
        yield return new("trapZaps", TrapZaps);
        yield return new("writeProtects", WriteProtects);
        yield return new("pagesCreated", PagesCreated);
        yield return new("pagesZapped", PagesZapped);
        yield return new("pagesRecycled", PagesRecycled);
        yield return new("pagesLive", PagesLive);
        yield return new("rootsCached", RootsCached);
        yield return new("rootHits", RootHits);
        yield return new("rootMisses", RootMisses);
        yield return new("fills", Fills);
        yield return new("fillRetries", FillRetries);
    }

    public override readonly string ToString() =>
        $"{WriteProtectTraps} write-protect traps zapping {TrapZaps} entries, {WriteProtects} page tables write-protected, " +
        $"{PagesCreated} shadow pages built, {PagesZapped} zapped ({PagesRecycled} recycled at the bound), {PagesLive} live, {RootsCached} roots cached " +
        $"({RootHits} root hits, {RootMisses} built), {Fills} fills, {FillRetries} re-walked";
}
