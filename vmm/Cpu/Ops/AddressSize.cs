using System.Runtime.CompilerServices;
using Iced.Intel;

namespace ToyVmm.Cpu.Ops;

/// <summary>
/// Address prefix ops: an explicit memory operand that needs more than
/// <c>base + index * scale + disp</c> has its address computed by a prefix op placed just
/// before the instruction's op, into <see cref="CpuState.AddrReg"/>; the instruction's own op
/// then addresses <c>[AddrReg]</c>, so every handler (lea too) gets the address through
/// <see cref="Mem.Ea"/> unchanged. Two cases: 32-bit addressing in 64-bit mode (the 0x67
/// prefix: <c>(uint)(base + index * scale + disp)</c>, then the FS/GS base) and an FS or GS
/// segment override (the base added to the 64-bit address). <see cref="Mem.Ea"/> therefore
/// has no segment term, and the common operand pays nothing for either.
/// </summary>
/// <remarks>
/// The prefix op is not an instruction: it subtracts itself from <c>Retired</c> (as the
/// bail-out op does), so counts, fault RIPs (it shares the instruction's RipOff) and the
/// budget stay per instruction. It touches no memory (quiet). An invalidated block turns
/// it into the bail-out, which restarts at the instruction. Implicit operands (strings,
/// loop/jecxz, maskmovdqu) take ESI/EDI/ECX and their segment in their own handlers;
/// EIP-relative operands are resolved (and wrapped) at decode time.
/// </remarks>
internal static unsafe class AddressSize
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Ea32(CpuState* s, Op* op)
    {
        s->Regs[CpuState.AddrReg] = (uint)(s->Regs[op->B] + (s->Regs[op->I] << op->Scale) + (ulong)op->Disp) + s->SegBase[op->Seg];
        s->Retired--;
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* EaSeg(CpuState* s, Op* op)
    {
        s->Regs[CpuState.AddrReg] = s->Regs[op->B] + (s->Regs[op->I] << op->Scale) + (ulong)op->Disp + s->SegBase[op->Seg];
        s->Retired--;
        return Exec.Next(s, op);
    }

    /// <summary>Whether <paramref name="ins"/> has an explicit memory operand with an FS or GS override (a prefix op adds the base).</summary>
    public static bool HasSegmentBase(in Instruction ins) =>
        Binder.HasMem(ins) && ins.MemorySegment is Register.FS or Register.GS;

    /// <summary>True when the legacy prefixes of the instruction at <paramref name="bytes"/> include 0x67.</summary>
    public static bool HasPrefix(ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
        {
            if (b == 0x67) return true;
            if (b is not (0x66 or 0xF0 or 0xF2 or 0xF3 or 0x2E or 0x36 or 0x3E or 0x26 or 0x64 or 0x65)) return false;
        }
        return false;
    }

    /// <summary>Whether <paramref name="ins"/>, decoded with a 0x67 prefix, needs a prefix op (an explicit, non-EIP-relative memory operand).</summary>
    public static bool NeedsPrefixOp(in Instruction ins) =>
        Binder.HasMem(ins) && !ins.IsIPRelativeMemoryOperand;

    /// <summary>
    /// Moves the address of the bound instruction op <paramref name="ins"/>, segment base included,
    /// into the prefix op <paramref name="prefix"/>; <paramref name="wrap32"/> for 0x67.
    /// </summary>
    public static void Split(Op* prefix, Op* ins, bool wrap32)
    {
        prefix->H = wrap32 ? &Ea32 : &EaSeg;
        prefix->B = ins->B;
        prefix->I = ins->I;
        prefix->Scale = ins->Scale;
        prefix->Disp = ins->Disp;
        prefix->Seg = ins->Seg;
        prefix->RipOff = ins->RipOff;
        prefix->Len = ins->Len;
        ins->B = (byte)CpuState.AddrReg;
        ins->I = (byte)CpuState.ZeroReg;
        ins->Scale = 0;
        ins->Disp = 0;
        ins->Seg = 0;
    }
}
