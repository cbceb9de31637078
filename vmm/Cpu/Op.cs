using System.Runtime.InteropServices;

namespace ToyVmm.Cpu;

/// <summary>
/// One pre-decoded instruction: its handler, bound at decode time, and its
/// operands resolved to register indices, displacement and immediate.
/// 32 bytes (pinned by a test) so two ops share a cache line.
/// </summary>
/// <remarks>
/// Effective address of a memory operand:
/// <c>Regs[B] + (Regs[I] &lt;&lt; Scale) + Disp</c> (an FS/GS base or 0x67 wrap: a prefix op, Ops/AddressSize.cs); B and I are
/// <see cref="CpuState.ZeroReg"/> when absent; a RIP-relative operand is resolved to
/// an absolute Disp at decode time (blocks are keyed by virtual address too).
/// Register operands are indices 0..15, except for 8-bit operands where they are
/// byte offsets into the register file (AH = 1, CH = 9, ... SPL = 32).
/// </remarks>
[StructLayout(LayoutKind.Sequential, Size = 32)]
internal unsafe struct Op
{
    public delegate*<CpuState*, Op*, Op*> H;  // 0
    public long Disp;                         // 8: memory displacement, absolute target or 64-bit immediate
    public int Imm;                           // 16: immediate (sign-extended when used as 64-bit)
    public byte R;                            // 20: register operand (reg field)
    public byte B;                            // 21: base register
    public byte I;                            // 22: index register
    public byte Scale;                        // 23: index shift 0..3
    public byte Seg;                          // 24: 0 none, 1 FS, 2 GS
    public byte Len;                          // 25: instruction length
    public ushort RipOff;                     // 26: offset of the instruction from the block start
    public byte R2;                           // 28: second register operand (r/m when it is a register)
    public byte X;                            // 29: extra (condition code, sub-operation)
    public ushort Y;                          // 30: extra
}

/// <summary>
/// A decoded block: straight-line ops ending at a control transfer, a
/// system instruction, a page boundary or the op limit. Lives in unmanaged
/// memory owned by the <see cref="CodeCache"/>, in a slot of a size class. An
/// invalidated block has its handlers replaced by a bail-out, so a vCPU still
/// inside it leaves at its next op; its slot is reused after a grace period
/// (CodeCache.Reclaim.cs).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct Block
{
    public ulong Va;            // guest-virtual start
    public ulong Gpa;           // guest-physical start
    public ulong Gpa2;          // guest-physical page of the second page when an instruction crosses one, else ulong.MaxValue
    public int NumOps;          // ops including the terminating one
    public int Valid;           // 0 once invalidated
    public Block* HashNext;
    public ulong Quiet0, Quiet1;  // bit i: op i touches no guest memory (TLB shootdown, TlbShootdown.cs)
    public int Seq;             // changed (interlocked) before the slot is freed or reused: IsQuiescent re-checks it
    public int Class;           // slot size class (CodeCache.Reclaim.cs); HashNext links free slots
    // The translation tier (Tier/): while a block is counted, op 0 runs the counting entry and
    // Entry0 holds op 0's own handler; Hits counts entries, HitLimit is the threshold copied at
    // publication, TierState says whether a compilation was asked for (Tier/TierEntry.cs).
    public delegate*<CpuState*, Op*, Op*> Entry0;
    public int Hits;
    public int HitLimit;
    public int TierState;
    private fixed byte _pad[44];
    // Ops follow (aligned to 32 bytes).
    public const int HeaderSize = 128;
    public static Op* OpsOf(Block* b) => (Op*)((byte*)b + HeaderSize);
}
