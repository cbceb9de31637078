using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Iced.Intel;
using IReg = Iced.Intel.Register;

namespace ToyVmm.Cpu.Ops;

internal static unsafe partial class Sse
{
    /// <summary>
    /// maskmovdqu xmm1, xmm2: the bytes of xmm1 (R) whose byte in xmm2 (R2) has its top bit set
    /// go to [RDI] (DS or an FS/GS override; Y = 4: [EDI], 0x67). The span from the first to the
    /// last selected byte is probed for writing first, so a fault leaves memory untouched; a
    /// zero mask touches no memory.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Maskmovdqu(CpuState* s, Op* op)
    {
        Check(s);
        uint mask = (uint)Sse2.MoveMask(Ld(s, op->R2));
        if (mask != 0)
        {
            ulong rdi = op->Y == 4 ? (uint)s->Regs[7] : s->Regs[7];
            ulong ea = rdi + s->SegBase[op->Seg];
            int first = System.Numerics.BitOperations.TrailingZeroCount(mask), last = 31 - System.Numerics.BitOperations.LeadingZeroCount(mask);
            Vcpu.Of(s).ProbeWrite(ea + (ulong)first, last - first + 1);
            Vector128<byte> data = Ld(s, op->R);
            for (int i = first; i <= last; i++)
                if ((mask & (1u << i)) != 0) Mem.Write<S8>(s, ea + (ulong)i, data.GetElement(i));
        }
        return Exec.Next(s, op);
    }

    private static bool BindMaskmovdqu(in Instruction ins, Op* op)
    {
        if (ins.Code != Code.Maskmovdqu_rDI_xmm_xmm) return false;
        op->R = (byte)(ins.Op1Register - IReg.XMM0);
        op->R2 = (byte)(ins.Op2Register - IReg.XMM0);
        op->Y = (byte)(ins.Op0Kind == OpKind.MemorySegEDI ? 4 : 8);
        op->Seg = ins.SegmentPrefix switch { IReg.FS => 1, IReg.GS => 2, _ => 0 };
        op->H = &Maskmovdqu;
        return true;
    }
}
