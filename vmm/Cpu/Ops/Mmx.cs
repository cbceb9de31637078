using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using V = System.Runtime.Intrinsics.Vector128<byte>;

namespace ToyVmm.Cpu.Ops;

/// <summary>
/// The MMX register forms: MMX itself, SSE's additions on MMX registers (pavgb, pshufw, pmovmskb,
/// movntq, maskmovq, ...), SSE2's (paddq, psubq, pmuludq, movq2dq, movdq2q) and the conversions
/// between MMX and XMM registers (cvtpi2ps, cvtps2pi, cvtpi2pd, cvtpd2pi and the truncating ones).
/// </summary>
/// <remarks>
/// MMi is the significand of x87 physical register Ri (<see cref="CpuState.Fpr"/>), as the SDM
/// has it: writing MMi also sets Ri's sign and exponent to all ones, and every MMX instruction,
/// once it commits, marks all eight registers valid (abridged tag 0xFF) and sets TOP to 0;
/// <c>emms</c> marks them all empty (and sets TOP to 0 too, as the host does). fxsave/fxrstor
/// (Sse.cs) store and load the register file, so a guest sees the aliasing. A conversion whose
/// source is memory rather than an MMX register (cvtpi2ps xmm, m64; cvtpi2pd xmm, m64) leaves
/// the x87 state alone, as the host does.
/// Faults, before anything changes: CR0.EM #UD, CR0.TS #NM (forms that also name an XMM register
/// take the SSE check first, CR4.OSFXSR included), then #MF (CR0.NE) while an unmasked x87
/// exception is flagged in the status word.
/// Op fields: R = destination MMX (or XMM) register, R2 = source register; Y = 1 when the source
/// or destination is memory; X = memory width as in Sse.cs (0 m128 aligned, 2 m64, 3 m32, 4 m16).
/// </remarks>
internal static unsafe partial class Mmx
{
    private const ushort TopMask = 0x3800;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Get(CpuState* s, int i) => s->Fpr[i * 2];

    /// <summary>Writes MMi: the significand, and all ones in the sign and exponent.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Set(CpuState* s, int i, ulong v)
    {
        s->Fpr[i * 2] = v;
        s->Fpr[i * 2 + 1] = 0xFFFF;
    }

    /// <summary>The x87-to-MMX transition every MMX instruction makes when it commits: all tags valid, TOP = 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Transition(CpuState* s)
    {
        s->Ftw = 0xFF;
        s->Fsw &= unchecked((ushort)~TopMask);
    }

    /// <summary>The faults of an MMX form that names no XMM register: EM #UD, TS #NM, pending x87 exception #MF.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Check(CpuState* s)
    {
        if ((s->Cr0 & (Vcpu.Cr0Em | Vcpu.Cr0Ts)) != 0 || (s->Fsw & ~s->Fcw & 0x3F) != 0) Raise(s);
    }

    /// <summary>The faults of a form that names an XMM register too: the SSE ones first, then #MF.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CheckWithXmm(CpuState* s)
    {
        if (s->SseFault != 0) throw new GuestFault(s->SseFault);
        if ((s->Fsw & ~s->Fcw & 0x3F) != 0) Raise(s);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Raise(CpuState* s)
    {
        if ((s->Cr0 & Vcpu.Cr0Em) != 0) throw new GuestFault(Vec.UD);
        if ((s->Cr0 & Vcpu.Cr0Ts) != 0) throw new GuestFault(Vec.NM);
        // A pending unmasked exception; without CR0.NE it would be reported on FERR#, which nothing here wires up.
        if ((s->Cr0 & Vcpu.Cr0Ne) != 0) throw new GuestFault(Vec.MF);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Load(CpuState* s, Op* op) =>
        op->X == 3 ? (uint)Mem.Read<S32>(s, Mem.Ea(s, op)) : Mem.Read<S64>(s, Mem.Ea(s, op));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Src(CpuState* s, Op* op) => op->Y == 0 ? Get(s, op->R2) : Load(s, op);

    /// <summary>MMx = O(MMx, mm/m64 (m32 for punpckl*), imm), computed in the low lane of the SSE operation.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* M2<O>(CpuState* s, Op* op) where O : struct, IV2
    {
        Check(s);
        ulong b = Src(s, op);
        V r = O.Do(Vector128.CreateScalar(Get(s, op->R)).AsByte(), Vector128.CreateScalar(b).AsByte(), op->Imm);
        Set(s, op->R, r.AsUInt64().ToScalar());
        Transition(s);
        return Exec.Next(s, op);
    }

    /// <summary>movq mm, mm/m64 and movd mm, m32: the source, zero-extended.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* MovToMm(CpuState* s, Op* op)
    {
        Check(s);
        Set(s, op->R, Src(s, op));
        Transition(s);
        return Exec.Next(s, op);
    }

    /// <summary>movd mm, r32 (X = 3) and movq mm, r64 (X = 2): R2 = GPR.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* GprToMm(CpuState* s, Op* op)
    {
        Check(s);
        ulong v = s->Regs[op->R2];
        Set(s, op->R, op->X == 3 ? (uint)v : v);
        Transition(s);
        return Exec.Next(s, op);
    }

    /// <summary>movd r32, mm (X = 3, zero-extended) and movq r64, mm (X = 2): R2 = GPR.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* MmToGpr(CpuState* s, Op* op)
    {
        Check(s);
        ulong v = Get(s, op->R);
        s->Regs[op->R2] = op->X == 3 ? (uint)v : v;
        Transition(s);
        return Exec.Next(s, op);
    }

    /// <summary>movq m64, mm; movd m32, mm; movntq m64, mm (X = 2 or 3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* StoreMm(CpuState* s, Op* op)
    {
        Check(s);
        ulong v = Get(s, op->R);
        if (op->X == 3) Mem.Write<S32>(s, Mem.Ea(s, op), v);
        else Mem.Write<S64>(s, Mem.Ea(s, op), v);
        Transition(s);
        return Exec.Next(s, op);
    }

    /// <summary>pmovmskb r, mm: R2 = GPR (zero-extended), R = mm.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Pmovmskb(CpuState* s, Op* op)
    {
        Check(s);
        s->Regs[op->R2] = (uint)Sse2.MoveMask(Vector128.CreateScalar(Get(s, op->R)).AsByte());
        Transition(s);
        return Exec.Next(s, op);
    }

    /// <summary>pextrw r, mm, imm8: the word imm &amp; 3, zero-extended.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Pextrw(CpuState* s, Op* op)
    {
        Check(s);
        s->Regs[op->R2] = (ushort)(Get(s, op->R) >> (16 * (op->Imm & 3)));
        Transition(s);
        return Exec.Next(s, op);
    }

    /// <summary>pinsrw mm, r32/m16, imm8: word imm &amp; 3 of mm from the low word of the source.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Pinsrw(CpuState* s, Op* op)
    {
        Check(s);
        ulong w = op->Y == 0 ? (ushort)s->Regs[op->R2] : (ushort)Mem.Read<S16>(s, Mem.Ea(s, op));
        int sh = 16 * (op->Imm & 3);
        Set(s, op->R, (Get(s, op->R) & ~(0xFFFFUL << sh)) | w << sh);
        Transition(s);
        return Exec.Next(s, op);
    }

    /// <summary>emms: every x87 register empty (abridged tag 0), TOP = 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Emms(CpuState* s, Op* op)
    {
        Check(s);
        s->Ftw = 0;
        s->Fsw &= unchecked((ushort)~TopMask);
        return Exec.Next(s, op);
    }

    /// <summary>
    /// maskmovq mm1, mm2: the bytes of mm1 (R) whose byte in mm2 (R2) has its top bit set go to
    /// [RDI] (DS or an FS/GS override; Y = 4: [EDI], 0x67); the selected span is probed for
    /// writing first, so a fault leaves memory untouched (as maskmovdqu, Sse.Maskmov.cs).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Maskmovq(CpuState* s, Op* op)
    {
        Check(s);
        uint mask = (uint)Sse2.MoveMask(Vector128.CreateScalar(Get(s, op->R2)).AsByte());
        if (mask != 0)
        {
            ulong rdi = op->Y == 4 ? (uint)s->Regs[7] : s->Regs[7];
            ulong ea = rdi + s->SegBase[op->Seg];
            int first = System.Numerics.BitOperations.TrailingZeroCount(mask), last = 31 - System.Numerics.BitOperations.LeadingZeroCount(mask);
            Vcpu.Of(s).ProbeWrite(ea + (ulong)first, last - first + 1);
            ulong data = Get(s, op->R);
            for (int i = first; i <= last; i++)
                if ((mask & (1u << i)) != 0) Mem.Write<S8>(s, ea + (ulong)i, data >> (8 * i));
        }
        Transition(s);
        return Exec.Next(s, op);
    }

    /// <summary>movdq2q mm, xmm: the low quadword.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Movdq2q(CpuState* s, Op* op)
    {
        CheckWithXmm(s);
        Set(s, op->R, s->Xmm[op->R2 * 2]);
        Transition(s);
        return Exec.Next(s, op);
    }

    /// <summary>movq2dq xmm, mm: R = xmm, R2 = mm; the upper quadword is cleared.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Movq2dq(CpuState* s, Op* op)
    {
        CheckWithXmm(s);
        s->Xmm[op->R * 2] = Get(s, op->R2);
        s->Xmm[op->R * 2 + 1] = 0;
        Transition(s);
        return Exec.Next(s, op);
    }
}
