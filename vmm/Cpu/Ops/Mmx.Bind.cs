using Iced.Intel;
using static ToyVmm.Cpu.Operands;
using IReg = Iced.Intel.Register;

namespace ToyVmm.Cpu.Ops;

internal static unsafe partial class Mmx
{
    /// <summary>
    /// The MMX-register forms. Mnemonics shared with SSE (paddb, movq, pextrw, ...) are routed:
    /// a form that names an MMX register binds here, any other goes to the binder registered
    /// before (Sse.Bind.cs). The SSSE3 forms on MMX registers (pshufb mm, ...) stay unbound (#UD):
    /// CPUID reports no SSSE3.
    /// </summary>
    public static void Register()
    {
        Route<Pxor>(Mnemonic.Pxor); Route<Por>(Mnemonic.Por); Route<Pand>(Mnemonic.Pand); Route<Pandn>(Mnemonic.Pandn);
        Route<Paddb>(Mnemonic.Paddb); Route<Paddw>(Mnemonic.Paddw); Route<Paddd>(Mnemonic.Paddd); Route<Paddq>(Mnemonic.Paddq);
        Route<Psubb>(Mnemonic.Psubb); Route<Psubw>(Mnemonic.Psubw); Route<Psubd>(Mnemonic.Psubd); Route<Psubq>(Mnemonic.Psubq);
        Route<Paddsb>(Mnemonic.Paddsb); Route<Paddsw>(Mnemonic.Paddsw); Route<Paddusb>(Mnemonic.Paddusb); Route<Paddusw>(Mnemonic.Paddusw);
        Route<Psubsb>(Mnemonic.Psubsb); Route<Psubsw>(Mnemonic.Psubsw); Route<Psubusb>(Mnemonic.Psubusb); Route<Psubusw>(Mnemonic.Psubusw);
        Route<Pcmpeqb>(Mnemonic.Pcmpeqb); Route<Pcmpeqw>(Mnemonic.Pcmpeqw); Route<Pcmpeqd>(Mnemonic.Pcmpeqd);
        Route<Pcmpgtb>(Mnemonic.Pcmpgtb); Route<Pcmpgtw>(Mnemonic.Pcmpgtw); Route<Pcmpgtd>(Mnemonic.Pcmpgtd);
        Route<Punpcklbw>(Mnemonic.Punpcklbw); Route<Punpcklwd>(Mnemonic.Punpcklwd); Route<Punpckldq>(Mnemonic.Punpckldq);
        Route<HighHalf<Punpcklbw>>(Mnemonic.Punpckhbw); Route<HighHalf<Punpcklwd>>(Mnemonic.Punpckhwd); Route<HighHalf<Punpckldq>>(Mnemonic.Punpckhdq);
        Route<PackPair<Packsswb>>(Mnemonic.Packsswb); Route<PackPair<Packssdw>>(Mnemonic.Packssdw); Route<PackPair<Packuswb>>(Mnemonic.Packuswb);
        Route<Pmullw>(Mnemonic.Pmullw); Route<Pmulhw>(Mnemonic.Pmulhw); Route<Pmulhuw>(Mnemonic.Pmulhuw); Route<Pmuludq>(Mnemonic.Pmuludq);
        Route<Pmaddwd>(Mnemonic.Pmaddwd);
        Route<Pminub>(Mnemonic.Pminub); Route<Pmaxub>(Mnemonic.Pmaxub); Route<Pminsw>(Mnemonic.Pminsw); Route<Pmaxsw>(Mnemonic.Pmaxsw);
        Route<Pavgb>(Mnemonic.Pavgb); Route<Pavgw>(Mnemonic.Pavgw); Route<Psadbw>(Mnemonic.Psadbw);
        RouteShift<PsrlwX, PsrlwI>(Mnemonic.Psrlw); RouteShift<PsrldX, PsrldI>(Mnemonic.Psrld); RouteShift<PsrlqX, PsrlqI>(Mnemonic.Psrlq);
        RouteShift<PsllwX, PsllwI>(Mnemonic.Psllw); RouteShift<PslldX, PslldI>(Mnemonic.Pslld); RouteShift<PsllqX, PsllqI>(Mnemonic.Psllq);
        RouteShift<PsrawX, PsrawI>(Mnemonic.Psraw); RouteShift<PsradX, PsradI>(Mnemonic.Psrad);
        Route(Mnemonic.Movd, BindMove);
        Route(Mnemonic.Movq, BindMove);
        Route(Mnemonic.Pmovmskb, BindPmovmskb);
        Route(Mnemonic.Pextrw, BindPextrw);
        Route(Mnemonic.Pinsrw, BindPinsrw);

        Binder.Add(Mnemonic.Pshufw, (in Instruction i, Op* o) => BindM2<Pshufw>(i, o));
        Binder.Add(Mnemonic.Movntq, BindMove);
        Binder.Add(Mnemonic.Emms, (in Instruction i, Op* o) => { o->H = &Emms; return true; });
        Binder.Add(Mnemonic.Maskmovq, BindMaskmovq);
        Binder.Add(Mnemonic.Movdq2q, (in Instruction i, Op* o) => { o->R = Mi(i.Op0Register); o->R2 = Xi(i.Op1Register); o->H = &Movdq2q; return true; });
        Binder.Add(Mnemonic.Movq2dq, (in Instruction i, Op* o) => { o->R = Xi(i.Op0Register); o->R2 = Mi(i.Op1Register); o->H = &Movq2dq; return true; });
        Binder.Add(Mnemonic.Cvtps2pi, (in Instruction i, Op* o) => BindCvtToMm<Cvtps2dq, ToInt4>(i, o, Code.Cvtps2dq_xmm_xmmm128, 2));
        Binder.Add(Mnemonic.Cvttps2pi, (in Instruction i, Op* o) => BindCvtToMm<Cvttps2dq, ToInt4>(i, o, Code.Cvttps2dq_xmm_xmmm128, 2));
        Binder.Add(Mnemonic.Cvtpd2pi, (in Instruction i, Op* o) => BindCvtToMm<Cvtpd2dq, ToInt2>(i, o, Code.Cvtpd2dq_xmm_xmmm128, 0));
        Binder.Add(Mnemonic.Cvttpd2pi, (in Instruction i, Op* o) => BindCvtToMm<Cvttpd2dq, ToInt2>(i, o, Code.Cvttpd2dq_xmm_xmmm128, 0));
        Binder.Add(Mnemonic.Cvtpi2ps, (in Instruction i, Op* o) => BindCvtFromMm(i, o, &CvtPi2Ps, HostFp.For(Code.Cvtdq2ps_xmm_xmmm128)));
        Binder.Add(Mnemonic.Cvtpi2pd, (in Instruction i, Op* o) => BindCvtFromMm(i, o, &CvtPi2Pd, 0));
    }

    private static bool IsMm(IReg r) => r >= IReg.MM0 && r <= IReg.MM7;
    private static byte Mi(IReg r) => (byte)(r - IReg.MM0);
    private static byte Xi(IReg r) => (byte)(r - IReg.XMM0);

    /// <summary>True when an operand of <paramref name="ins"/> is an MMX register.</summary>
    private static bool NamesMm(in Instruction ins)
    {
        for (int k = 0; k < ins.OpCount; k++)
            if (ins.GetOpKind(k) == OpKind.Register && IsMm(ins.GetOpRegister(k))) return true;
        return false;
    }

    /// <summary>Binds <paramref name="m"/>'s MMX-register forms with <paramref name="mmx"/>, the rest as before.</summary>
    private static void Route(Mnemonic m, BindFn mmx)
    {
        BindFn? other = Binder.Lookup(m);
        Binder.Add(m, (in Instruction i, Op* o) => NamesMm(i) ? mmx(i, o) : other is not null && other(i, o), Binder.EndsBlock(m));
    }

    private static void Route<O>(Mnemonic m) where O : struct, IV2 => Route(m, (in Instruction i, Op* o) => BindM2<O>(i, o));

    private static void RouteShift<OX, OI>(Mnemonic m) where OX : struct, IV2 where OI : struct, IV2 =>
        Route(m, (in Instruction i, Op* o) => IsImm(i, 1) ? BindM2<OI>(i, o) : BindM2<OX>(i, o));

    /// <summary>mm, mm/m64 (m32 for punpckl*)[, imm8] into <see cref="M2{O}"/>.</summary>
    private static bool BindM2<O>(in Instruction ins, Op* op) where O : struct, IV2
    {
        if (!IsReg(ins, 0) || !IsMm(ins.Op0Register)) return false;
        op->R = Mi(ins.Op0Register);
        op->R2 = op->R;
        if (IsReg(ins, 1))
        {
            if (!IsMm(ins.Op1Register)) return false;
            op->R2 = Mi(ins.Op1Register);
        }
        else if (IsMem(ins, 1))
        {
            Operands.Mem(ins, op);
            op->Y = 1;
            op->X = ins.MemorySize.GetSize() == 4 ? (byte)3 : (byte)2;
        }
        int last = ins.OpCount - 1;
        if (last >= 1 && IsImm(ins, last)) op->Imm = (int)(ins.GetImmediate(last) & 0xFF);
        op->H = &M2<O>;
        return true;
    }

    /// <summary>movd / movq / movntq with an MMX register on either side.</summary>
    private static bool BindMove(in Instruction ins, Op* op)
    {
        switch (ins.Code)
        {
            case Code.Movd_mm_rm32:
            case Code.Movq_mm_rm64:
            case Code.Movq_mm_mmm64:
                op->R = Mi(ins.Op0Register);
                op->X = ins.Code == Code.Movd_mm_rm32 ? (byte)3 : (byte)2;
                if (IsMem(ins, 1)) { Operands.Mem(ins, op); op->Y = 1; op->H = &MovToMm; }
                else if (IsMm(ins.Op1Register)) { op->R2 = Mi(ins.Op1Register); op->H = &MovToMm; }
                else { op->R2 = Gpr(ins.Op1Register); op->H = &GprToMm; }
                return true;
            case Code.Movd_rm32_mm:
            case Code.Movq_rm64_mm:
            case Code.Movq_mmm64_mm:
            case Code.Movntq_m64_mm:
                op->X = ins.Code == Code.Movd_rm32_mm ? (byte)3 : (byte)2;
                if (IsMem(ins, 0)) { Operands.Mem(ins, op); op->R = Mi(ins.Op1Register); op->H = &StoreMm; }
                else if (IsMm(ins.Op0Register)) { op->R = Mi(ins.Op0Register); op->R2 = Mi(ins.Op1Register); op->H = &MovToMm; }
                else { op->R = Mi(ins.Op1Register); op->R2 = Gpr(ins.Op0Register); op->H = &MmToGpr; }
                return true;
            default:
                return false;
        }
    }

    private static bool BindPmovmskb(in Instruction ins, Op* op)
    {
        op->R2 = Gpr(ins.Op0Register);
        op->R = Mi(ins.Op1Register);
        op->H = &Pmovmskb;
        return true;
    }

    private static bool BindPextrw(in Instruction ins, Op* op)
    {
        if (!IsReg(ins, 0) || !IsReg(ins, 1)) return false;
        op->R2 = Gpr(ins.Op0Register);
        op->R = Mi(ins.Op1Register);
        op->Imm = ins.Immediate8;
        op->H = &Pextrw;
        return true;
    }

    private static bool BindPinsrw(in Instruction ins, Op* op)
    {
        op->R = Mi(ins.Op0Register);
        if (IsReg(ins, 1)) op->R2 = Gpr(ins.Op1Register); else { Operands.Mem(ins, op); op->Y = 1; }
        op->Imm = ins.Immediate8;
        op->H = &Pinsrw;
        return true;
    }

    private static bool BindMaskmovq(in Instruction ins, Op* op)
    {
        if (ins.Code != Code.Maskmovq_rDI_mm_mm) return false;
        op->R = Mi(ins.Op1Register);
        op->R2 = Mi(ins.Op2Register);
        op->Y = (byte)(ins.Op0Kind == OpKind.MemorySegEDI ? 4 : 8);
        op->Seg = ins.SegmentPrefix switch { IReg.FS => 1, IReg.GS => 2, _ => 0 };
        op->H = &Maskmovq;
        return true;
    }

    /// <summary>cvt(t)ps2pi / cvt(t)pd2pi mm, xmm/mem: <paramref name="width"/> 2 (m64) or 0 (aligned m128); Imm = the packed form's thunk.</summary>
    private static bool BindCvtToMm<O, L>(in Instruction ins, Op* op, Code packed, byte width) where O : struct, IV2 where L : struct, IFpLanes
    {
        int thunk = HostFp.For(packed);
        if (thunk < 0) return false;
        op->R = Mi(ins.Op0Register);
        op->X = width;
        if (IsReg(ins, 1)) op->R2 = Xi(ins.Op1Register); else { Operands.Mem(ins, op); op->Y = 1; }
        op->Imm = thunk;
        op->H = &CvtToMm<O, L>;
        return true;
    }

    /// <summary>cvtpi2ps / cvtpi2pd xmm, mm/m64.</summary>
    private static bool BindCvtFromMm(in Instruction ins, Op* op, delegate*<CpuState*, Op*, Op*> h, int thunk)
    {
        if (thunk < 0) return false;
        op->R = Xi(ins.Op0Register);
        if (IsReg(ins, 1)) op->R2 = Mi(ins.Op1Register); else { Operands.Mem(ins, op); op->Y = 1; op->X = 2; }
        op->Imm = thunk;
        op->H = h;
        return true;
    }
}
