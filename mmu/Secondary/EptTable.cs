namespace ToyVmm.Mmu.Secondary;

// Locking: entries are read lock-free by vCPUs (Volatile.Read) and changed
// only under the owning secondary MMU's _mmuLock, except the accessed and
// dirty bits, which vCPUs set with an interlocked OR (like a CPU's page
// walker setting A/D in an EPT entry). Inner tables are created under
// _mmuLock and never freed while the VM lives, so a lock-free reader that
// found a table may keep using it.

/// <summary>
/// The EPT-like table: guest frame number to <see cref="EptEntry"/>, a 4-level
/// radix tree of 512-entry tables (9 bits a level, 48-bit guest-physical
/// addresses), populated on demand by secondary faults.
/// </summary>
public sealed class EptTable
{
    private const int Bits = 9;
    private const int Fanout = 1 << Bits;
    private const ulong IndexMask = Fanout - 1;
    public const ulong MaxGfn = 1UL << 36;

    private readonly object?[] _root = new object?[Fanout];   // PML4: object[] -> object[] -> ulong[]
    private long _present;                                   // guarded by the owner's _mmuLock

    /// <summary>Entries now present.</summary>
    public long PresentCount => Volatile.Read(ref _present);

    /// <summary>Lock-free lookup for the vCPU fast path.</summary>
    public EptEntry Lookup(ulong gfn)
    {
        var leaf = Leaf(gfn, create: false);
        return leaf is null ? EptEntry.Empty : new EptEntry(Volatile.Read(ref leaf[gfn & IndexMask]));
    }

    /// <summary>Install an entry; the caller holds the MMU lock and has re-checked the invalidate sequence.</summary>
    public void SetLocked(ulong gfn, EptEntry entry)
    {
        var leaf = Leaf(gfn, create: true)!;
        ulong old = Interlocked.Exchange(ref leaf[gfn & IndexMask], entry.Raw);
        if ((old & EptEntry.Read) == 0 && entry.IsPresent) _present++;
        else if ((old & EptEntry.Read) != 0 && !entry.IsPresent) _present--;
    }

    /// <summary>Clear an entry and return what it held (its dirty bit goes to the host page). Caller holds the MMU lock.</summary>
    public EptEntry ZapLocked(ulong gfn)
    {
        var leaf = Leaf(gfn, create: false);
        if (leaf is null) return EptEntry.Empty;
        var old = new EptEntry(Interlocked.Exchange(ref leaf[gfn & IndexMask], 0));
        if (old.IsPresent) _present--;
        return old;
    }

    /// <summary>
    /// The vCPU fast path: OR <paramref name="bits"/> (accessed, dirty, the vCPU's
    /// TLB-holder bit) into the entry, provided it still maps the same frame.
    /// False when the entry was zapped or replaced meanwhile: look it up again.
    /// </summary>
    public bool TrySetBits(ulong gfn, EptEntry seen, ulong bits)
    {
        var leaf = Leaf(gfn, create: false);
        if (leaf is null) return false;
        ref ulong slot = ref leaf[gfn & IndexMask];
        ulong cur = seen.Raw;
        while (true)
        {
            if ((cur & bits) == bits) return true;
            ulong prev = Interlocked.CompareExchange(ref slot, cur | bits, cur);
            if (prev == cur) return true;
            // Changed under us: fine if only bits changed, not the mapping.
            if ((prev & EptEntry.Read) == 0 || new EptEntry(prev).Frame != seen.Frame) return false;
            cur = prev;
        }
    }

    /// <summary>Clear the accessed bit; true if it was set.</summary>
    public bool TestAndClearAccessed(ulong gfn)
    {
        var leaf = Leaf(gfn, create: false);
        if (leaf is null) return false;
        ulong old = Interlocked.And(ref leaf[gfn & IndexMask], ~EptEntry.Accessed);
        return (old & (EptEntry.Read | EptEntry.Accessed)) == (EptEntry.Read | EptEntry.Accessed);
    }

    /// <summary>
    /// Visit present entries with gfn in [first, last] whose leaf tables exist.
    /// The walk skips absent subtrees, so its cost grows with the mapped pages,
    /// not with the size of the range.
    /// </summary>
    public void ForEachPresent(ulong first, ulong last, Action<ulong, EptEntry> visit)
    {
        if (first > last) return;
        for (ulong i4 = first >> 27; i4 <= Math.Min(last >> 27, IndexMask); i4++)
        {
            if (Volatile.Read(ref _root[i4]) is not object?[] l3) continue;
            for (ulong i3 = 0; i3 < Fanout; i3++)
            {
                ulong base3 = (i4 << 27) | (i3 << 18);
                if (base3 + (1UL << 18) - 1 < first || base3 > last) continue;
                if (Volatile.Read(ref l3[i3]) is not object?[] l2) continue;
                for (ulong i2 = 0; i2 < Fanout; i2++)
                {
                    ulong base2 = base3 | (i2 << 9);
                    if (base2 + Fanout - 1 < first || base2 > last) continue;
                    if (Volatile.Read(ref l2[i2]) is not ulong[] leaf) continue;
                    ulong lo = Math.Max(first, base2) - base2, hi = Math.Min(last, base2 + IndexMask) - base2;
                    for (ulong i1 = lo; i1 <= hi; i1++)
                    {
                        ulong raw = Volatile.Read(ref leaf[i1]);
                        if ((raw & EptEntry.Read) != 0) visit(base2 | i1, new EptEntry(raw));
                    }
                }
            }
        }
    }

    private ulong[]? Leaf(ulong gfn, bool create)
    {
        if (gfn >= MaxGfn) return null;
        var l3 = Child(_root, (gfn >> 27) & IndexMask, create, () => new object?[Fanout]);
        if (l3 is null) return null;
        var l2 = Child(l3, (gfn >> 18) & IndexMask, create, () => new object?[Fanout]);
        if (l2 is null) return null;
        return Child(l2, (gfn >> 9) & IndexMask, create, () => new ulong[Fanout]);
    }

    private static T? Child<T>(object?[] table, ulong index, bool create, Func<T> make) where T : class
    {
        if (Volatile.Read(ref table[index]) is T existing) return existing;
        if (!create) return null;
        var fresh = make();
        // Publish the zeroed table before anyone can see it (release semantics).
        return Interlocked.CompareExchange(ref table[index], fresh, null) as T ?? fresh;
    }
}
