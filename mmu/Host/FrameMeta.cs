using System.Runtime.InteropServices;

namespace ToyVmm.Mmu.Host;

/// <summary>Per-frame state bits, kept in <see cref="FrameMeta.Flags"/> and changed only with interlocked operations.</summary>
[Flags]
internal enum FrameFlags
{
    None = 0,
    /// <summary>The page lock (PG_locked): held across swap I/O and reclaim of the frame.</summary>
    Locked = 1 << 0,
    /// <summary>Contents differ from the swap copy (or there is none): set by unmap from a dirty PTE, by <c>SetPageDirty</c>, by a dirty release.</summary>
    Dirty = 1 << 1,
    /// <summary>Used since the last aging pass (mark_page_accessed).</summary>
    Referenced = 1 << 2,
    /// <summary>On the active list (meaningful while <see cref="OnLru"/> or <see cref="Isolated"/>).</summary>
    Active = 1 << 3,
    /// <summary>Anonymous memory that goes to swap when reclaimed.</summary>
    SwapBacked = 1 << 4,
    /// <summary>In the swap cache; <see cref="FrameMeta.SwapSlot"/> names the slot.</summary>
    SwapCache = 1 << 5,
    /// <summary>Linked on an LRU list.</summary>
    OnLru = 1 << 6,
    /// <summary>Taken off the LRU by a reclaim pass that holds a reference.</summary>
    Isolated = 1 << 7,
    /// <summary>On the allocator's free list.</summary>
    Free = 1 << 8,
    /// <summary>Taken out of service by a shrink of the pool (<see cref="FrameAllocator.Shrink"/>): never handed out again.</summary>
    Retired = 1 << 9,
}

/// <summary>
/// The metadata of one host frame (Linux's <c>struct page</c>, cut down).
/// 32 bytes, pinned by <c>FrameMetaTests</c>; kept in native memory beside the frames.
/// </summary>
/// <remarks>
/// Who may change what (see mmu/LOCKING.md):
/// <list type="bullet">
/// <item><see cref="RefCount"/>: interlocked; the frame is freed when it drops to zero.</item>
/// <item><see cref="MapCount"/> and <see cref="Owner"/>: under the owning address space's lock.</item>
/// <item><see cref="Flags"/>: interlocked bit operations (the page lock lives here).</item>
/// <item><see cref="SwapSlot"/>: under the swap lock, with the page locked.</item>
/// <item><see cref="LruPrev"/>/<see cref="LruNext"/>: under the LRU lock; on a free frame <see cref="LruNext"/>
/// links the allocator's free stack, under the allocator lock (a free frame is on no LRU).</item>
/// </list>
/// </remarks>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
internal struct FrameMeta
{
    public const uint NoFrame = uint.MaxValue;
    public const uint NoSlot = uint.MaxValue;

    /// <summary>References: one per mapping PTE, one for the swap cache, one per short-lived holder (GUP, reclaim).</summary>
    public int RefCount;
    /// <summary>PTEs that map the frame (0 or 1: mappings are private and never shared).</summary>
    public int MapCount;
    /// <summary><see cref="FrameFlags"/>.</summary>
    public int Flags;
    /// <summary>The swap slot while <see cref="FrameFlags.SwapCache"/> is set.</summary>
    public uint SwapSlot;
    public uint LruPrev;
    public uint LruNext;
    /// <summary>Reverse map: (address-space id &lt;&lt; 40) | host-virtual page number; 0 when unmapped.</summary>
    public ulong Owner;

    public const int OwnerShift = 40;
    public static ulong MakeOwner(int addressSpaceId, ulong vpn) => ((ulong)(uint)addressSpaceId << OwnerShift) | vpn;
    public static int OwnerSpace(ulong owner) => (int)(owner >> OwnerShift);
    public static ulong OwnerVpn(ulong owner) => owner & ((1UL << OwnerShift) - 1);
}
