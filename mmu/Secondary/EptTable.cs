using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ToyVmm.Mmu.Secondary;

// Locking: entries are read lock-free by vCPUs (Volatile.Read) and changed
// only under the owning secondary MMU's _mmuLock, except the accessed, dirty
// and TLB-holder bits, which vCPUs set with an interlocked OR (like a CPU's
// page walker setting A/D in an EPT entry). Inner tables are created under
// _mmuLock and never freed while the VM lives, so a lock-free reader that
// found a table may keep using it (tables emptied by zaps stay in place).
//
// Occupancy (EptTable.Walk.cs) is read and written only under _mmuLock.
// SetLocked and ZapLocked are the only writers of an entry's Read bit (vCPUs
// OR bits into an entry they saw present, or clear A), so whenever the lock is
// held a leaf's bitmap is exactly its set of present entries, and an inner
// table's bitmap exactly its children that hold a present entry.
//
// Table layout. Lookup and TrySetBits index only slots 0..511 of a table,
// exactly as they would without occupancy, so their cost is unchanged:
//   inner table  object?[513]: [0..511] children; [512] a ulong[9] whose bits
//                0..511 mark the children holding a present entry and whose
//                word 8 counts them
//   leaf table   ulong[521]:   [0..511] entries; [512..519] bit i = entry i
//                present; [520] the number of present entries

/// <summary>
/// The EPT-like table: guest frame number to <see cref="EptEntry"/>, a 4-level
/// radix tree of 512-entry tables (9 bits a level, 48-bit guest-physical
/// addresses), populated on demand by secondary faults.
/// </summary>
public sealed partial class EptTable
{
    private const int Bits = 9;
    private const int Fanout = 1 << Bits;
    private const ulong IndexMask = Fanout - 1;
    public const ulong MaxGfn = 1UL << 36;

    private readonly object?[] _root = NewInner();            // PML4: object[] -> object[] -> ulong[]
    private long _present;                                   // guarded by the owner's _mmuLock

    /// <summary>Entries now present.</summary>
    public long PresentCount => Volatile.Read(ref _present);

    /// <summary>Lock-free lookup for the vCPU fast path.</summary>
    public EptEntry Lookup(ulong gfn)
    {
        var leaf = Leaf(gfn);
        return leaf is null ? EptEntry.Empty : new EptEntry(Volatile.Read(ref leaf[gfn & IndexMask]));
    }

    /// <summary>Install an entry; the caller holds the MMU lock and has re-checked the invalidate sequence.</summary>
    public void SetLocked(ulong gfn, EptEntry entry)
    {
        if (gfn >= MaxGfn)
            throw new ArgumentOutOfRangeException(nameof(gfn), $"guest frame {gfn:x} is beyond the table's 48-bit guest-physical space");
        var l3 = Child(_root, (gfn >> 27) & IndexMask, create: true, NewInner)!;
        var l2 = Child(l3, (gfn >> 18) & IndexMask, create: true, NewInner)!;
        var leaf = Child(l2, (gfn >> 9) & IndexMask, create: true, NewLeaf)!;
        ulong old = Interlocked.Exchange(ref leaf[gfn & IndexMask], entry.Raw);
        bool was = (old & EptEntry.Read) != 0;
        if (!was && entry.IsPresent) MarkPresentLocked(gfn, l3, l2, leaf);
        else if (was && !entry.IsPresent) MarkAbsentLocked(gfn, l3, l2, leaf);
    }

    /// <summary>Clear an entry and return what it held (its dirty bit goes to the host page). Caller holds the MMU lock.</summary>
    public EptEntry ZapLocked(ulong gfn)
    {
        if (gfn >= MaxGfn) return EptEntry.Empty;
        if (InnerChild(_root, (gfn >> 27) & IndexMask) is not { } l3) return EptEntry.Empty;
        if (InnerChild(l3, (gfn >> 18) & IndexMask) is not { } l2) return EptEntry.Empty;
        if (LeafChild(l2, (gfn >> 9) & IndexMask) is not { } leaf) return EptEntry.Empty;
        var old = new EptEntry(Interlocked.Exchange(ref leaf[gfn & IndexMask], 0));
        if (old.IsPresent) MarkAbsentLocked(gfn, l3, l2, leaf);
        return old;
    }

    /// <summary>
    /// The vCPU fast path: OR <paramref name="bits"/> (accessed, dirty, the vCPU's
    /// TLB-holder bit) into the entry, provided it still maps the same frame.
    /// False when the entry was zapped or replaced meanwhile: look it up again.
    /// </summary>
    public bool TrySetBits(ulong gfn, EptEntry seen, ulong bits)
    {
        var leaf = Leaf(gfn);
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
        var leaf = Leaf(gfn);
        if (leaf is null) return false;
        ulong old = Interlocked.And(ref leaf[gfn & IndexMask], ~EptEntry.Accessed);
        return (old & (EptEntry.Read | EptEntry.Accessed)) == (EptEntry.Read | EptEntry.Accessed);
    }

    /// <summary>The leaf table holding <paramref name="gfn"/>'s entry, or null when none exists yet (lock-free).</summary>
    private ulong[]? Leaf(ulong gfn)
    {
        if (gfn >= MaxGfn) return null;
        var l3 = InnerChild(_root, (gfn >> 27) & IndexMask);
        if (l3 is null) return null;
        var l2 = InnerChild(l3, (gfn >> 18) & IndexMask);
        return l2 is null ? null : LeafChild(l2, (gfn >> 9) & IndexMask);
    }

    // The lock-free descent reads slots 0..511 of tables it knows the type of: the
    // root's and level-3 slots only ever hold NewInner tables, level-2 slots only
    // NewLeaf tables (Child is their one writer). So it reads them without the
    // runtime's checks: a type check per level (the generic Child's 'is T' over a
    // shared instantiation is a cast helper call) and the element-type check of
    // taking a ref into an object?[]. This is the vCPU's TLB-miss path; the checks
    // were about 5% of a vCPU's samples in reclaim-under-guest.

    /// <summary>Slot <paramref name="index"/> (0..511) of an inner table whose children are inner tables.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static object?[]? InnerChild(object?[] table, ulong index) =>
        Unsafe.As<object?[]?>(Volatile.Read(ref Slot(table, index)));

    /// <summary>Slot <paramref name="index"/> (0..511) of an inner table whose children are leaves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong[]? LeafChild(object?[] table, ulong index) =>
        Unsafe.As<ulong[]?>(Volatile.Read(ref Slot(table, index)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ref object? Slot(object?[] table, ulong index)
    {
        System.Diagnostics.Debug.Assert(index < Fanout && table.Length == Fanout + 1, "a child slot of an inner table");
        return ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(table), (nint)index);
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
