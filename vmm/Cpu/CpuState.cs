using System.Runtime.InteropServices;

namespace ToyVmm.Cpu;

/// <summary>The signature of every instruction handler: execute <c>op</c>, return the next op or null to end the block.</summary>
internal unsafe struct HandlerSlot
{
    public delegate*<CpuState*, Op*, Op*> Fn;
}

/// <summary>
/// The architectural and interpreter state of one vCPU, in unmanaged memory so
/// handlers index registers without bounds checks. Owned by its <see cref="Vcpu"/>
/// and touched only by the vCPU's own thread.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CpuState
{
    /// <summary>Index of the always-zero register used for "no base" / "no index" in effective addresses.</summary>
    public const int ZeroReg = 16;
    /// <summary>Index of the register that holds a 32-bit effective address (0x67 prefix, Ops/AddressSize.cs).</summary>
    public const int AddrReg = 17;

    public fixed ulong Regs[18];          // RAX..R15, the zero register, the 32-bit address register
    public ulong Rip;

    // Lazy arithmetic flags (Flags.cs): the last flag-setting result and its inputs.
    public ulong LRes, LDst, LSrc, LAux;
    public int LKind;                     // LazyKind << 2 | size log2; 0 = arithmetic flags are in Flags
    public int Cpl;                       // 0 or 3
    public ulong Flags;                   // RFLAGS; arithmetic bits valid only when LKind == 0

    public fixed ulong SegBase[3];        // [0] = 0 (CS/DS/ES/SS in long mode), [1] = FS base, [2] = GS base
    public fixed ushort Sel[6];           // selectors, SegmentRegister order

    // Block execution bookkeeping.
    public ulong BlockVa;                 // guest-virtual address of the executing block
    public Op* CurOp;                     // op being executed (null outside a block)
    public Block* CurBlock;
    public ulong AccessVa;                // guest-virtual address of the access in flight, or AccessUnknown (TlbShootdown.cs)
    public long Retired;
    public int ExitReason;                // ExitReasons.*; checked at block boundaries
    public long ChainLimit;               // chained blocks (Exec.Chain) stop when Retired would reach this
    public ulong TlbCplBit;               // 1 at CPL 3: part of every TLB tag
    public ulong FlushEpoch;              // incremented by every TLB flush: host pointers taken before a change may be stale
    public long InstructionLimit;         // Retired at which Run stops (string ops yield when they reach it)

    // Code-cache grace periods (CodeCache.Reclaim.cs).
    public long* CodeEpochNow;            // the cache's epoch cell, read at block boundaries
    public long CodeEpochSeen;            // epoch the jump cache was last cleared for (vCPU thread only)
    public long CodeAck;                  // published: no block retired before this epoch is referenced; Offline outside Run

    // System registers.
    public ulong Cr0, Cr2, Cr3, Cr4, Cr8, Efer;
    public ulong Star, Lstar, Cstar, Fmask, KernelGsBase, TscAux, ApicBase, Pat;
    public ulong GdtBase, IdtBase, TrBase;
    public ushort GdtLimit, IdtLimit, TrLimit, TrSel, LdtSel;

    public uint Mxcsr;
    public int SseFault;                  // 0, or the vector an SSE instruction raises now (#UD or #NM), from CR0/CR4
    public ushort Fcw, Fsw;
    public byte Ftw;                      // abridged tag word (fxsave's): bit i set = physical register i valid
    // The x87 register file R0..R7 by physical index, two qwords each: the 64-bit significand
    // (MMi aliases it) and the sign and exponent in the low 16 bits. ST(i) is R[(TOP + i) & 7].
    public fixed ulong Fpr[16];
    public fixed ulong Xmm[32];           // XMM0..15, two qwords each (low first)

    public nint Self;                     // GCHandle of the owning Vcpu (slow paths only)
    public nint LinkHandle;               // GCHandle of its VcpuLink

    public TlbEntry* TlbRead;
    public TlbEntry* TlbWrite;
    public JumpEntry* Jump;
    public ulong* Held;                   // filter of guest frames whose host pointers were handed out (TlbShootdown.cs)
}

internal static class ExitReasons
{
    public const int None = 0;
    public const int Halted = 1;
    public const int Stop = 2;
}

/// <summary>One software-TLB entry: guest-virtual page (| CPL bit) to host page.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct TlbEntry
{
    public ulong Tag;                     // page-aligned GVA | TlbCplBit; Invalid when empty
    public long Addend;                   // host address = gva + Addend
    public byte* Code;                    // write TLB: the page's "has decoded code" byte (slow path when nonzero)
    public ulong Gpa;                     // guest-physical page base

    public const ulong Invalid = ulong.MaxValue;
}

/// <summary>Per-vCPU cache from (RIP | CPL bit) to a decoded block; flushed with the TLB.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct JumpEntry
{
    public ulong Tag;
    public Block* Block;
}
