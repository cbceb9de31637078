namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// What an invalidator may do to a vCPU's software TLB from another thread
/// (the part of a TLB shootdown that does not need the vCPU to run). A vCPU
/// that caches host pointers attaches one to its <see cref="VcpuLink"/>.
/// </summary>
/// <remarks>
/// Ordering, with the vCPU's fill path (fill entry; full fence; read the link's
/// requests) against the invalidator (zap; post request, a full fence; then
/// these calls): either the invalidator sees the filled entry, or the vCPU sees
/// the request and flushes before it uses the pointer.
/// </remarks>
public interface IVcpuTlb
{
    /// <summary>
    /// False when no host pointer for a guest frame in [<paramref name="firstGfn"/>,
    /// <paramref name="lastGfn"/>] has been handed out since the TLB was last
    /// flushed (a conservative filter: true may be a false positive).
    /// </summary>
    bool MayHold(ulong firstGfn, ulong lastGfn);

    /// <summary>
    /// <see cref="MayHold"/> for a batch's listed guest frames: false when no host pointer for any
    /// of <paramref name="gfns"/> has been handed out since the TLB was last flushed.
    /// </summary>
    bool MayHoldAny(ReadOnlySpan<ulong> gfns)
    {
        foreach (ulong g in gfns)
            if (MayHold(g, g)) return true;
        return false;
    }

    /// <summary>Drop the TLB entries of guest frames in [<paramref name="firstGfn"/>, <paramref name="lastGfn"/>].</summary>
    void ShootDown(ulong firstGfn, ulong lastGfn);

    /// <summary>
    /// Read after <see cref="Interlocked.MemoryBarrierProcessWide"/>: true when the
    /// vCPU is executing an instruction that touches no guest memory, so it holds
    /// no host pointer outside its TLB and its next access reads the TLB afresh.
    /// </summary>
    bool IsQuiescent { get; }

    /// <summary>
    /// Read after <see cref="Interlocked.MemoryBarrierProcessWide"/>, with the range's
    /// entries already shot down: true when the vCPU cannot hold a host pointer into guest
    /// frames [<paramref name="firstGfn"/>, <paramref name="lastGfn"/>] outside its TLB,
    /// so its next access to them reads the cleared TLB. <see cref="IsQuiescent"/>
    /// implies it; a TLB may also answer for a vCPU inside an access to another page.
    /// </summary>
    bool IsQuiescentFor(ulong firstGfn, ulong lastGfn) => IsQuiescent;

    /// <summary>
    /// A counter that moves while the vCPU executes guest instructions (instructions
    /// retired, counted at block boundaries), or -1 when the TLB cannot tell. An
    /// invalidator that sees it stand still has no acknowledgement to wait for: the
    /// vCPU is not running (the host has descheduled it, or it is stuck in a long
    /// access), so spinning for it only takes the core it needs.
    /// </summary>
    long Progress => -1;

    /// <summary>
    /// Ask the vCPU, if it is running guest code, to leave its chain of blocks at the next
    /// block boundary, where its run loop polls the link's requests, instead of at the end of
    /// its chain budget: a flush just posted is then acknowledged within a block. Only a
    /// hint: a kick that is lost (the vCPU starts a new chain at that moment) costs the
    /// chain budget, never safety, since the request stays posted.
    /// </summary>
    void Kick() { }

    /// <summary>For the invariant checker: does a live TLB entry map <paramref name="gfn"/> to <paramref name="hostPage"/>?</summary>
    bool Maps(ulong gfn, nint hostPage);
}
