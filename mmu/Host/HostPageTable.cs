using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace ToyVmm.Mmu.Host;

// Locking: every access is under the owning address space's lock; the table
// has no lock of its own.

/// <summary>
/// The 4-level host page table of one address space: 512-entry levels of 9 bits
/// over a 48-bit host-virtual space (36-bit page numbers). Leaves are arrays of
/// raw <see cref="Pte"/> values; inner levels are created on first use and kept.
/// </summary>
internal sealed class HostPageTable
{
    private const int Bits = 9;
    private const int Fanout = 1 << Bits;
    private const ulong Mask = Fanout - 1;
    public const ulong MaxVpn = 1UL << 36;

    private readonly ulong[]?[]?[]?[] _pml4 = new ulong[]?[]?[]?[Fanout];

    /// <summary>Leaf tables allocated (for statistics).</summary>
    public int LeafTables { get; private set; }

    /// <summary>Tables of every level allocated, the top one included: only what some page used needs one.</summary>
    public int Tables => 1 + _innerTables + LeafTables;
    private int _innerTables;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong[]? Leaf(ulong vpn)
    {
        var pdpt = _pml4[(vpn >> 27) & Mask];
        if (pdpt is null) return null;
        var pd = pdpt[(vpn >> 18) & Mask];
        if (pd is null) return null;
        return pd[(vpn >> 9) & Mask];
    }

    private ulong[] LeafCreate(ulong vpn)
    {
        ref var pdpt = ref _pml4[(vpn >> 27) & Mask];
        if (pdpt is null) { pdpt = new ulong[]?[]?[Fanout]; _innerTables++; }
        ref var pd = ref pdpt[(vpn >> 18) & Mask];
        if (pd is null) { pd = new ulong[]?[Fanout]; _innerTables++; }
        ref var leaf = ref pd[(vpn >> 9) & Mask];
        if (leaf is null) { leaf = new ulong[Fanout]; LeafTables++; }
        return leaf;
    }

    /// <summary>The entry for a page, or <see cref="Pte.None"/> when its tables do not exist.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Pte Get(ulong vpn)
    {
        Debug.Assert(vpn < MaxVpn, "vpn within 48 bits");
        var leaf = Leaf(vpn);
        return leaf is null ? Pte.None : new Pte(leaf[vpn & Mask]);
    }

    /// <summary>
    /// Read an entry without the address-space lock (diagnostics only). Tables
    /// are never freed and are published whole, so this sees the entry's old or
    /// new value, never garbage.
    /// </summary>
    public Pte GetRacy(ulong vpn)
    {
        var pdpt = Volatile.Read(ref _pml4[(vpn >> 27) & Mask]);
        if (pdpt is null) return Pte.None;
        var pd = Volatile.Read(ref pdpt[(vpn >> 18) & Mask]);
        if (pd is null) return Pte.None;
        var leaf = Volatile.Read(ref pd[(vpn >> 9) & Mask]);
        return leaf is null ? Pte.None : new Pte(Volatile.Read(ref leaf[vpn & Mask]));
    }

    /// <summary>A reference to the entry, creating its tables.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref ulong EntryCreate(ulong vpn)
    {
        Debug.Assert(vpn < MaxVpn, "vpn within 48 bits");
        var leaf = Leaf(vpn) ?? LeafCreate(vpn);
        return ref leaf[vpn & Mask];
    }

    /// <summary>A reference to the entry, or a null reference when its tables do not exist.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref ulong EntryOrNull(ulong vpn)
    {
        var leaf = Leaf(vpn);
        if (leaf is null) return ref Unsafe.NullRef<ulong>();
        return ref leaf[vpn & Mask];
    }

    /// <summary>
    /// The next page at or after <paramref name="vpn"/> and before <paramref name="end"/>
    /// whose entry is not none, skipping absent tables; false when there is none.
    /// </summary>
    public bool NextUsed(ref ulong vpn, ulong end)
    {
        while (vpn < end)
        {
            var leaf = Leaf(vpn);
            if (leaf is null)
            {
                vpn = (vpn | Mask) + 1;   // skip the whole absent leaf
                continue;
            }
            ulong stop = Math.Min(end, (vpn | Mask) + 1);
            for (; vpn < stop; vpn++)
                if (leaf[vpn & Mask] != 0) return true;
        }
        return false;
    }
}
