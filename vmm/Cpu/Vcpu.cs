using System.Runtime.InteropServices;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Cpu;

/// <summary>
/// One virtual CPU: its architectural state and the interpreter loop that runs
/// it. Constructed and run on the vCPU's own thread.
/// </summary>
/// <remarks>
/// API contract used by the VMM, tests and benchmarks (the interpreter fills it in):
/// registers are read and written through the accessors below; <see cref="Run"/>
/// executes until an exit. Everything else is internal to <c>vmm/Cpu/</c>
/// (see vmm/Cpu/README.md).
/// </remarks>
public sealed unsafe partial class Vcpu : IDisposable
{
    private CpuState* _s;          // owned; freed in Dispose/finalizer
    private GCHandle _self;        // weak: lets static handlers find this object on slow paths
    private GCHandle _linkHandle;  // weak: Link, for the request poll of chained blocks (Exec.Chain)
    private readonly CodeCache _code;

    public Vcpu(int index, IGuestMemory memory, VcpuLink link, IVmExitHandler exits)
    {
        DecoderWarmUp.Start();   // the binder's and Iced's one-time set-up, off this vCPU's first decode
        Index = index;
        Memory = memory;
        Link = link;
        Exits = exits;
        _code = CodeCache.For(memory);
        _shadow = memory as ToyVmm.Mmu.Secondary.Shadow.IShadowPaging;
        _s = AllocState();
        _self = GCHandle.Alloc(this, GCHandleType.Weak);
        _s->Self = GCHandle.ToIntPtr(_self);
        _linkHandle = GCHandle.Alloc(link, GCHandleType.Weak);
        _s->LinkHandle = GCHandle.ToIntPtr(_linkHandle);
        _tscBase = System.Diagnostics.Stopwatch.GetTimestamp();
        UpdateSseFault();
        FlushTlb();
        _code.Register(_s);
        link.AttachTlb(this);
    }

    public int Index { get; }
    public IGuestMemory Memory { get; }
    public VcpuLink Link { get; }
    /// <summary>Where port I/O and hypercalls exit to (the VM's devices).</summary>
    public IVmExitHandler Exits { get; }

    /// <summary>
    /// The translation tier, VM-wide (shared by the vCPUs of one guest memory): -1 interprets
    /// only; 0 compiles every block at its first execution on the vCPU thread; N &gt; 0 compiles a
    /// block on a background thread once it has been entered N times (vmm/Cpu/README.md).
    /// Applies to blocks decoded after it is set.
    /// </summary>
    public int TierThreshold { get => _code.TierThreshold; set => _code.TierThreshold = value; }

    /// <summary>The translation tier's counters (VM-wide).</summary>
    public TierStats TierStats => _code.TierStats;

    internal CpuState* State => _s;
    internal CodeCache Code => _code;

    /// <summary>The vCPU that owns <paramref name="s"/> (slow paths only).</summary>
    internal static Vcpu Of(CpuState* s) => (Vcpu)GCHandle.FromIntPtr(s->Self).Target!;

    public ulong GetGpr(Gpr r) => _s->Regs[(int)r & 15];
    public void SetGpr(Gpr r, ulong value) => _s->Regs[(int)r & 15] = value;
    public ulong Rip { get => _s->Rip; set => _s->Rip = value; }
    /// <summary>Architectural RFLAGS (lazy flags materialised on read).</summary>
    public ulong Rflags { get => Flags.Read(_s); set => Flags.Write(_s, value); }
    public ulong Cr0 { get => _s->Cr0; set { _s->Cr0 = value | 0x10; UpdateSseFault(); FlushTlb(); } }
    public ulong Cr2 { get => _s->Cr2; set => _s->Cr2 = value; }
    public ulong Cr3 { get => _s->Cr3; set { _s->Cr3 = value; FlushTlb(); } }
    public ulong Cr4 { get => _s->Cr4; set { _s->Cr4 = value; UpdateSseFault(); FlushTlb(); } }
    public ulong Efer { get => _s->Efer; set { _s->Efer = value; FlushTlb(); } }
    public UInt128 GetXmm(int index) => new(_s->Xmm[(index & 15) * 2 + 1], _s->Xmm[(index & 15) * 2]);
    public void SetXmm(int index, UInt128 value)
    {
        _s->Xmm[(index & 15) * 2] = (ulong)value;
        _s->Xmm[(index & 15) * 2 + 1] = (ulong)(value >> 64);
    }

    /// <summary>Current privilege level (0 or 3).</summary>
    public int Cpl => _s->Cpl;
    /// <summary>x87 control word (fxsave's FCW).</summary>
    public ushort X87Control { get => _s->Fcw; set => _s->Fcw = value; }

    /// <summary>x87 status word (fxsave's FSW; TOP in bits 11-13).</summary>
    public ushort X87Status { get => _s->Fsw; set => _s->Fsw = value; }

    /// <summary>x87 abridged tag word (fxsave's FTW): bit i set = physical register i is not empty.</summary>
    public byte X87AbridgedTag { get => _s->Ftw; set => _s->Ftw = value; }

    /// <summary>ST(<paramref name="st"/>) as fxsave stores it: the significand (MMx when TOP is 0) and the sign and exponent.</summary>
    public (ulong Significand, ushort SignExponent) GetX87Register(int st)
    {
        int r = ((_s->Fsw >> 11) + st) & 7;
        return (_s->Fpr[r * 2], (ushort)_s->Fpr[r * 2 + 1]);
    }

    public void SetX87Register(int st, ulong significand, ushort signExponent)
    {
        int r = ((_s->Fsw >> 11) + st) & 7;
        _s->Fpr[r * 2] = significand;
        _s->Fpr[r * 2 + 1] = signExponent;
    }

    /// <summary>MXCSR (rounding control, masks and the sticky exception flags); bits 16-31 must be zero.</summary>
    public uint Mxcsr
    {
        get => _s->Mxcsr;
        set => _s->Mxcsr = (value & ~0xFFFFu) == 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), "MXCSR bits 16-31 are reserved");
    }

    /// <summary>Model-specific register (the ones rdmsr/wrmsr implement); unknown ones read 0.</summary>
    public ulong GetMsr(uint msr) => ReadMsr(msr) ?? 0;

    /// <summary>GDTR base and limit (the VMM points it at the GDT it builds in the reserved top).</summary>
    public void SetGdtr(ulong baseAddress, ushort limit) { _s->GdtBase = baseAddress; _s->GdtLimit = limit; }
    /// <summary>IDTR base and limit (limit 0 at entry: any exception is a VM error).</summary>
    public void SetIdtr(ulong baseAddress, ushort limit) { _s->IdtBase = baseAddress; _s->IdtLimit = limit; }
    /// <summary>Loads a segment register with a selector and flat base; CS must be a 64-bit code selector.</summary>
    public void SetSegment(SegmentRegister seg, ushort selector, ulong baseAddress)
    {
        _s->Sel[(int)seg] = selector;
        if (seg == SegmentRegister.Fs) _s->SegBase[1] = baseAddress;
        else if (seg == SegmentRegister.Gs) _s->SegBase[2] = baseAddress;
        else if (seg == SegmentRegister.Cs) SetCpl(selector & 3);
    }

    public ushort GetSelector(SegmentRegister seg) => _s->Sel[(int)seg];
    public ulong GetSegmentBase(SegmentRegister seg) =>
        seg == SegmentRegister.Fs ? _s->SegBase[1] : seg == SegmentRegister.Gs ? _s->SegBase[2] : 0;

    /// <summary>Instructions retired since construction (counted at block boundaries: it lags the running vCPU by up to a chain of blocks).</summary>
    public long InstructionsRetired => _s->Retired;

    /// <summary>
    /// On the vCPU's own thread only (inside a hypercall or port access): the
    /// instructions retired before the current one, exactly, including the ones of
    /// the block in progress.
    /// </summary>
    public long InstructionsRetiredBeforeCurrent
    {
        get
        {
            CpuState* s = _s;
            Op* cur = s->CurOp;
            return cur != null ? s->Retired + (cur - Block.OpsOf(s->CurBlock)) : s->Retired;
        }
    }

    internal void UpdateSseFault() =>
        _s->SseFault = (_s->Cr0 & Cr0Em) != 0 || (_s->Cr4 & 0x200) == 0 ? Vec.UD : (_s->Cr0 & Cr0Ts) != 0 ? Vec.NM : 0;

    internal void SetCpl(int cpl)
    {
        _s->Cpl = cpl;
        _s->TlbCplBit = cpl == 3 ? 1UL : 0;
    }

    private static CpuState* AllocState()
    {
        var s = (CpuState*)NativeMemory.AlignedAlloc((nuint)sizeof(CpuState), 64);
        NativeMemory.Clear(s, (nuint)sizeof(CpuState));
        s->TlbRead = (TlbEntry*)NativeMemory.AlignedAlloc((nuint)(sizeof(TlbEntry) * Mem.TlbSize), 64);
        s->TlbWrite = (TlbEntry*)NativeMemory.AlignedAlloc((nuint)(sizeof(TlbEntry) * Mem.TlbSize), 64);
        s->Jump = (JumpEntry*)NativeMemory.AlignedAlloc((nuint)(sizeof(JumpEntry) * JumpSize), 64);
        s->Held = (ulong*)NativeMemory.AlignedAlloc(FilterWords * sizeof(ulong), 64);
        NativeMemory.Clear(s->Held, FilterWords * sizeof(ulong));
        s->Flags = 2;
        s->Cr0 = 0x10;
        s->Mxcsr = 0x1F80;
        s->Fcw = 0x37F;
        s->Pat = 0x0007040600070406;
        s->ApicBase = 0xFEE00900;
        return s;
    }

    private void FreeState()
    {
        if (_s == null) return;
        Link.DetachTlb();   // no invalidator or checker reads the TLB once it is gone
        _code.Unregister(_s);   // no grace period waits for it
        NativeMemory.AlignedFree(_s->Held);
        NativeMemory.AlignedFree(_s->TlbRead);
        NativeMemory.AlignedFree(_s->TlbWrite);
        NativeMemory.AlignedFree(_s->Jump);
        NativeMemory.AlignedFree(_s);
        _s = null;
    }

    public void Dispose()
    {
        FreeState();
        if (_self.IsAllocated) _self.Free();
        if (_linkHandle.IsAllocated) _linkHandle.Free();
        GC.SuppressFinalize(this);
    }

    ~Vcpu()
    {
        FreeState();
        if (_self.IsAllocated) _self.Free();
        if (_linkHandle.IsAllocated) _linkHandle.Free();
    }
}

public enum SegmentRegister { Es, Cs, Ss, Ds, Fs, Gs }
