namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// One entry of the EPT-like table (8 bytes, pinned by a test): permission,
/// accessed and dirty bits and the host frame, in the shape of an Intel EPT
/// leaf (R=bit 0, W=1, X=2, A=8, D=9, frame in bits 12..43).
/// </summary>
public readonly record struct EptEntry(ulong Raw)
{
    public const ulong Read = 1UL << 0;
    public const ulong Write = 1UL << 1;
    public const ulong Execute = 1UL << 2;
    public const ulong Accessed = 1UL << 8;
    public const ulong Dirty = 1UL << 9;
    private const ulong FrameMask = 0xFFFF_FFFFUL << 12;

    /// <summary>
    /// Bits 52..63: the vCPUs (index 0..11) that may hold this page in their
    /// software TLB since it was installed. A zap asks only them to flush;
    /// a vCPU with a higher index is always asked.
    /// </summary>
    public const int VcpuShift = 52;
    public const int TrackedVcpus = 12;
    public const ulong VcpuMask = 0xFFFUL << VcpuShift;

    /// <summary>The TLB-holder bit of a vCPU, or 0 for one that is not tracked (always flushed).</summary>
    public static ulong VcpuBit(int index) => (uint)index < TrackedVcpus ? 1UL << (VcpuShift + index) : 0;

    public ulong Vcpus => Raw & VcpuMask;

    public static readonly EptEntry Empty = new(0);

    public static EptEntry Make(Hfn frame, bool writable, bool executable) =>
        new(((ulong)frame.Value << 12) | Read | (writable ? Write : 0) | (executable ? Execute : 0));

    public EptEntry With(ulong bits) => new(Raw | bits);

    public bool IsPresent => (Raw & Read) != 0;
    public bool IsWritable => (Raw & Write) != 0;
    public bool IsExecutable => (Raw & Execute) != 0;
    public bool IsAccessed => (Raw & Accessed) != 0;
    public bool IsDirty => (Raw & Dirty) != 0;
    public Hfn Frame => new((uint)((Raw & FrameMask) >> 12));

    /// <summary>True when the entry grants <paramref name="kind"/>.</summary>
    public bool Permits(AccessKind kind) => kind switch
    {
        AccessKind.Read => IsPresent,
        AccessKind.Write => IsPresent && IsWritable,
        _ => IsPresent && IsExecutable,
    };

    public override string ToString() => IsPresent
        ? $"{Frame} {(IsPresent ? "r" : "-")}{(IsWritable ? "w" : "-")}{(IsExecutable ? "x" : "-")}{(IsAccessed ? "A" : "")}{(IsDirty ? "D" : "")}"
        : "not present";
}
