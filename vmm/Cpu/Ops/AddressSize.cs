using Iced.Intel;

namespace ToyVmm.Cpu.Ops;

/// <summary>
/// 32-bit addressing in 64-bit mode (the 0x67 prefix) for explicit memory operands. The
/// instruction is bound as usual, then its address moves into a prefix op placed just
/// before it: the prefix op computes <c>(uint)(base + index * scale + disp)</c> into
/// <see cref="CpuState.AddrReg"/> and the instruction's own op addresses
/// <c>[AddrReg + FS/GS base]</c>, so every handler (lea included) gets the wrapped address
/// through <see cref="Mem.Ea"/> unchanged and 64-bit addressing pays nothing.
/// </summary>
/// <remarks>
/// The prefix op is not an instruction: it subtracts itself from <c>Retired</c> (as the
/// bail-out op does), so counts, fault RIPs (it shares the instruction's RipOff) and the
/// budget stay per instruction. It touches no memory (quiet). An invalidated block turns
/// it into the bail-out, which restarts at the instruction. Implicit operands (strings,
/// loop/jecxz, maskmovdqu) take ESI/EDI/ECX in their own handlers; EIP-relative operands
/// are resolved (and wrapped) at decode time.
/// </remarks>
internal static unsafe class AddressSize
{
    public static Op* Ea32(CpuState* s, Op* op)
    {
        s->Regs[CpuState.AddrReg] = (uint)(s->Regs[op->B] + (s->Regs[op->I] << op->Scale) + (ulong)op->Disp);
        s->Retired--;
        return Exec.Next(s, op);
    }

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

    /// <summary>Moves the address of the bound instruction op <paramref name="ins"/> into the prefix op <paramref name="prefix"/>.</summary>
    public static void Split(Op* prefix, Op* ins)
    {
        prefix->H = &Ea32;
        prefix->B = ins->B;
        prefix->I = ins->I;
        prefix->Scale = ins->Scale;
        prefix->Disp = ins->Disp;
        prefix->RipOff = ins->RipOff;
        prefix->Len = ins->Len;
        ins->B = (byte)CpuState.AddrReg;
        ins->I = (byte)CpuState.ZeroReg;
        ins->Scale = 0;
        ins->Disp = 0;
    }
}
