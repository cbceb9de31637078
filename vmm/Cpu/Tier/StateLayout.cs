using System.Runtime.InteropServices;

namespace ToyVmm.Cpu.Tier;

/// <summary>Byte offsets of the <see cref="CpuState"/>, <see cref="TlbEntry"/> and <see cref="Block"/> fields compiled code reads and writes.</summary>
internal static class StateLayout
{
    public static readonly int Regs = Off<CpuState>(nameof(CpuState.Regs));
    public static readonly int Rip = Off<CpuState>(nameof(CpuState.Rip));
    public static readonly int LRes = Off<CpuState>(nameof(CpuState.LRes));
    public static readonly int LDst = Off<CpuState>(nameof(CpuState.LDst));
    public static readonly int LSrc = Off<CpuState>(nameof(CpuState.LSrc));
    public static readonly int LKind = Off<CpuState>(nameof(CpuState.LKind));
    public static readonly int LAux = Off<CpuState>(nameof(CpuState.LAux));
    public static readonly int SegBase = Off<CpuState>(nameof(CpuState.SegBase));
    public static readonly int CurOp = Off<CpuState>(nameof(CpuState.CurOp));
    public static readonly int Retired = Off<CpuState>(nameof(CpuState.Retired));
    public static readonly int ChainLimit = Off<CpuState>(nameof(CpuState.ChainLimit));
    public static readonly int InstructionLimit = Off<CpuState>(nameof(CpuState.InstructionLimit));
    public static readonly int CurBlock = Off<CpuState>(nameof(CpuState.CurBlock));
    public static readonly int BlockVa = Off<CpuState>(nameof(CpuState.BlockVa));
    public static readonly int AccessVa = Off<CpuState>(nameof(CpuState.AccessVa));
    public static readonly int ExitReason = Off<CpuState>(nameof(CpuState.ExitReason));
    public static readonly int TlbCplBit = Off<CpuState>(nameof(CpuState.TlbCplBit));
    public static readonly int TlbRead = Off<CpuState>(nameof(CpuState.TlbRead));
    public static readonly int TlbWrite = Off<CpuState>(nameof(CpuState.TlbWrite));
    public static readonly int Xmm = Off<CpuState>(nameof(CpuState.Xmm));
    public static readonly int SseFault = Off<CpuState>(nameof(CpuState.SseFault));

    public static readonly int EntryTag = Off<TlbEntry>(nameof(TlbEntry.Tag));
    public static readonly int EntryAddend = Off<TlbEntry>(nameof(TlbEntry.Addend));
    public static readonly int EntryCode = Off<TlbEntry>(nameof(TlbEntry.Code));
    public static readonly unsafe int EntrySize = sizeof(TlbEntry);

    public static readonly int BlockValid = Off<Block>(nameof(Block.Valid));
    public static readonly int BlockSeq = Off<Block>(nameof(Block.Seq));
    public static readonly int BlockHeaderVa = Off<Block>(nameof(Block.Va));

    private static int Off<T>(string field) => (int)Marshal.OffsetOf<T>(field);
}
