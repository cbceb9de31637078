using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ToyVmm.Mmu.Host;

// Locking: none of its own. Frame contents belong to whoever holds a
// reference (see FrameMeta for which lock guards which field). The page lock
// is a bit in FrameMeta.Flags, taken with an interlocked OR: it may be
// waited for with no other lock held, and only try-locked under one.

/// <summary>
/// Host physical memory: <see cref="Count"/> frames of 4 KiB in one native block
/// (never moved by the GC) and their <see cref="FrameMeta"/> in a second one.
/// </summary>
public sealed unsafe partial class FramePool : IDisposable
{
    private byte* _frames;      // Count * 4096 bytes, page-aligned; freed in Dispose
    private FrameMeta* _meta;   // Count entries; freed in Dispose

    internal FramePool(int count)
    {
        if (count <= 0) throw new ArgumentOutOfRangeException(nameof(count));
        Count = count;
        _frames = (byte*)NativeMemory.AlignedAlloc((nuint)count * (nuint)Page.Size, HugePageBytes);
        AdviseHugePages(_frames, (nuint)count * (nuint)Page.Size);
        _meta = (FrameMeta*)NativeMemory.AlignedAlloc((nuint)count * (nuint)sizeof(FrameMeta), 64);
        for (int i = 0; i < count; i++)
            _meta[i] = new FrameMeta { Flags = (int)FrameFlags.Free, SwapSlot = FrameMeta.NoSlot, LruPrev = FrameMeta.NoFrame, LruNext = FrameMeta.NoFrame };
    }

    public int Count { get; }

    /// <summary>The pool's alignment: a transparent huge page's size, so that every whole 2 MiB of it can be one.</summary>
    private const nuint HugePageBytes = 2u << 20;
    private const int MadvHugePage = 14;   // MADV_HUGEPAGE (Linux)

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(void* addr, nuint length, int advice);

    /// <summary>
    /// Ask Linux to back the pool with transparent huge pages (its default setting gives them
    /// only to ranges that ask). The kernel's copy of a frame into the swap file's page cache,
    /// the swap checksum and the vCPUs' reads and writes of guest memory all reach frames
    /// through the pool's mapping; with 4 KiB pages each frame costs a TLB miss, and in a
    /// virtual machine a miss is a nested page walk (bench/RESULTS.md "Page-out: the write
    /// straight from the pool, huge pages for the frames"). Frames are handed out lowest
    /// first, so the pages in use stay dense and a huge page rarely holds unused frames.
    /// Advice only: a refusal (another OS, THP disabled) changes nothing but the speed.
    /// </summary>
    private static void AdviseHugePages(byte* block, nuint bytes)
    {
        if (!OperatingSystem.IsLinux()) return;
        _ = Madvise(block, bytes, MadvHugePage);
    }

    /// <summary>Bytes of metadata per frame (pinned at 32 by a test).</summary>
    public static int MetadataBytesPerFrame => sizeof(FrameMeta);

    /// <summary>
    /// The 4 KiB page of a frame. Valid only while the caller holds a reference
    /// to the frame (a <c>GetUserPages</c> reference, or a secondary mapping
    /// that notifier invalidation will tear down before the frame is freed).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* PagePointer(Hfn frame)
    {
        if (frame.Value >= (uint)Count) ThrowBadFrame(frame);
        // SAFETY: the index was checked against Count; the block lives until Dispose.
        return _frames + ((nuint)frame.Value << Page.Shift);
    }

    /// <summary>Throws unless <paramref name="frame"/> names a frame of this pool.</summary>
    public void CheckFrame(Hfn frame)
    {
        if (frame.Value >= (uint)Count) ThrowBadFrame(frame);
    }

    public Span<byte> PageSpan(Hfn frame) => new(PagePointer(frame), (int)Page.Size);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ref FrameMeta Meta(uint frame)
    {
        Debug.Assert(frame < (uint)Count, "frame index in range");
        // SAFETY: frames are indices below Count handed out by the allocator; the block lives until Dispose.
        return ref _meta[frame];
    }

    internal byte* PageLocked(uint frame) => _frames + ((nuint)frame << Page.Shift);

    private static void ThrowBadFrame(Hfn frame) => throw new ArgumentOutOfRangeException(nameof(frame), frame, "no such host frame");

    // ---- flags -------------------------------------------------------------

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal FrameFlags FlagsOf(uint f) => (FrameFlags)Volatile.Read(ref Meta(f).Flags);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool Has(uint f, FrameFlags flag) => (Volatile.Read(ref Meta(f).Flags) & (int)flag) != 0;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Set(uint f, FrameFlags flag) => Interlocked.Or(ref Meta(f).Flags, (int)flag);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Clear(uint f, FrameFlags flag) => Interlocked.And(ref Meta(f).Flags, ~(int)flag);
    /// <summary>Clear <paramref name="flag"/> and say whether it was set.</summary>
    internal bool TestAndClear(uint f, FrameFlags flag) => (Interlocked.And(ref Meta(f).Flags, ~(int)flag) & (int)flag) != 0;

    /// <summary>
    /// Set the frame's dirty bit: its contents are newer than any swap copy.
    /// Lock-free, so a secondary MMU may call it under its own lock when it zaps
    /// a dirty entry. The caller must know the frame is still allocated
    /// (it held a mapping that invalidation is tearing down now).
    /// </summary>
    public void SetPageDirty(Hfn frame)
    {
        CheckFrame(frame);
        Set(frame.Value, FrameFlags.Dirty | FrameFlags.Referenced);
    }

    /// <summary>Note a use of the frame for reclaim's aging (mark_page_accessed). Lock-free.</summary>
    public void MarkPageAccessed(Hfn frame)
    {
        CheckFrame(frame);
        if (!Has(frame.Value, FrameFlags.Referenced)) Set(frame.Value, FrameFlags.Referenced);
    }

    // ---- page lock ---------------------------------------------------------

    internal bool TryLockPage(uint f) => (Interlocked.Or(ref Meta(f).Flags, (int)FrameFlags.Locked) & (int)FrameFlags.Locked) == 0;

    /// <summary>Wait for the page lock. The caller holds no address-space, LRU or swap lock (LOCKING.md).</summary>
    internal void LockPage(uint f)
    {
        HostLockDebug.AssertNoSpinLocksHeld();
        if (TryLockPage(f)) return;
        var spin = new SpinWait();
        while (!TryLockPage(f)) spin.SpinOnce(sleep1Threshold: 30);
    }

    internal void UnlockPage(uint f)
    {
        int old = Interlocked.And(ref Meta(f).Flags, ~(int)FrameFlags.Locked);
        Debug.Assert((old & (int)FrameFlags.Locked) != 0, "unlocking a page that is locked");
    }

    internal bool IsPageLocked(uint f) => Has(f, FrameFlags.Locked);

    // ---- references --------------------------------------------------------

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void GetPage(uint f)
    {
        int n = Interlocked.Increment(ref Meta(f).RefCount);
        Debug.Assert(n > 1, "get_page on a frame nobody holds");
    }

    /// <summary>Take a reference unless the frame is on its way to the free list (get_page_unless_zero).</summary>
    internal bool TryGetPageUnlessZero(uint f)
    {
        ref int rc = ref Meta(f).RefCount;
        int n = Volatile.Read(ref rc);
        while (n > 0)
        {
            int seen = Interlocked.CompareExchange(ref rc, n + 1, n);
            if (seen == n) return true;
            n = seen;
        }
        return false;
    }

    internal int RefCountOf(uint f) => Volatile.Read(ref Meta(f).RefCount);

    public void Dispose()
    {
        if (_frames != null) { NativeMemory.AlignedFree(_frames); _frames = null; }
        if (_meta != null) { NativeMemory.AlignedFree(_meta); _meta = null; }
    }
}
