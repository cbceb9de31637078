using Iced.Intel;
using static ToyVmm.Cpu.Operands;
using IReg = Iced.Intel.Register;

namespace ToyVmm.Cpu.Ops;

internal static unsafe partial class Sse
{
    public static void Register()
    {
        Binder.Add(Mnemonic.Maskmovdqu, BindMaskmovdqu);
        // movsd and cmpsd name both a string instruction and an SSE2 one.
        Binder.Add(Mnemonic.Movsd, (in Instruction i, Op* o) => i.Code == Code.Movsd_m32_m32 ? StringOps.Bind(i, o, 0) : BindScalarMove(i, o, 2));
        Binder.Add(Mnemonic.Cmpsd, (in Instruction i, Op* o) => i.Code == Code.Cmpsd_m32_m32 ? StringOps.Bind(i, o, 3) : BindV2<Cmpsd>(i, o, false));
        Binder.Add(Mnemonic.Movss, (in Instruction i, Op* o) => BindScalarMove(i, o, 3));

        Add<Pxor>(Mnemonic.Pxor, Mnemonic.Xorps, Mnemonic.Xorpd);
        Add<Por>(Mnemonic.Por, Mnemonic.Orps, Mnemonic.Orpd);
        Add<Pand>(Mnemonic.Pand, Mnemonic.Andps, Mnemonic.Andpd);
        Add<Pandn>(Mnemonic.Pandn, Mnemonic.Andnps, Mnemonic.Andnpd);
        Add<Paddb>(Mnemonic.Paddb); Add<Paddw>(Mnemonic.Paddw); Add<Paddd>(Mnemonic.Paddd); Add<Paddq>(Mnemonic.Paddq);
        Add<Psubb>(Mnemonic.Psubb); Add<Psubw>(Mnemonic.Psubw); Add<Psubd>(Mnemonic.Psubd); Add<Psubq>(Mnemonic.Psubq);
        Add<Paddsb>(Mnemonic.Paddsb); Add<Paddsw>(Mnemonic.Paddsw); Add<Paddusb>(Mnemonic.Paddusb); Add<Paddusw>(Mnemonic.Paddusw);
        Add<Psubsb>(Mnemonic.Psubsb); Add<Psubsw>(Mnemonic.Psubsw); Add<Psubusb>(Mnemonic.Psubusb); Add<Psubusw>(Mnemonic.Psubusw);
        Add<Pcmpeqb>(Mnemonic.Pcmpeqb); Add<Pcmpeqw>(Mnemonic.Pcmpeqw); Add<Pcmpeqd>(Mnemonic.Pcmpeqd);
        Add<Pcmpgtb>(Mnemonic.Pcmpgtb); Add<Pcmpgtw>(Mnemonic.Pcmpgtw); Add<Pcmpgtd>(Mnemonic.Pcmpgtd);
        Add<Punpcklbw>(Mnemonic.Punpcklbw); Add<Punpcklwd>(Mnemonic.Punpcklwd); Add<Punpckldq>(Mnemonic.Punpckldq); Add<Punpcklqdq>(Mnemonic.Punpcklqdq);
        Add<Punpckhbw>(Mnemonic.Punpckhbw); Add<Punpckhwd>(Mnemonic.Punpckhwd); Add<Punpckhdq>(Mnemonic.Punpckhdq); Add<Punpckhqdq>(Mnemonic.Punpckhqdq);
        Add<Packsswb>(Mnemonic.Packsswb); Add<Packssdw>(Mnemonic.Packssdw); Add<Packuswb>(Mnemonic.Packuswb);
        Add<Pmullw>(Mnemonic.Pmullw); Add<Pmulhw>(Mnemonic.Pmulhw); Add<Pmulhuw>(Mnemonic.Pmulhuw); Add<Pmuludq>(Mnemonic.Pmuludq); Add<Pmaddwd>(Mnemonic.Pmaddwd);
        Add<Pminub>(Mnemonic.Pminub); Add<Pmaxub>(Mnemonic.Pmaxub); Add<Pminsw>(Mnemonic.Pminsw); Add<Pmaxsw>(Mnemonic.Pmaxsw);
        Add<Pavgb>(Mnemonic.Pavgb); Add<Pavgw>(Mnemonic.Pavgw); Add<Psadbw>(Mnemonic.Psadbw);
        AddShift<PsrlwX, PsrlwI>(Mnemonic.Psrlw); AddShift<PsrldX, PsrldI>(Mnemonic.Psrld); AddShift<PsrlqX, PsrlqI>(Mnemonic.Psrlq);
        AddShift<PsllwX, PsllwI>(Mnemonic.Psllw); AddShift<PslldX, PslldI>(Mnemonic.Pslld); AddShift<PsllqX, PsllqI>(Mnemonic.Psllq);
        AddShift<PsrawX, PsrawI>(Mnemonic.Psraw); AddShift<PsradX, PsradI>(Mnemonic.Psrad);
        Add<Psrldq>(Mnemonic.Psrldq); Add<Pslldq>(Mnemonic.Pslldq);
        Add<Pshufd>(Mnemonic.Pshufd); Add<Pshuflw>(Mnemonic.Pshuflw); Add<Pshufhw>(Mnemonic.Pshufhw);
        Add<Shufps>(Mnemonic.Shufps); Add<Shufpd>(Mnemonic.Shufpd);
        Add<Unpcklps>(Mnemonic.Unpcklps); Add<Unpckhps>(Mnemonic.Unpckhps); Add<Unpcklpd>(Mnemonic.Unpcklpd); Add<Unpckhpd>(Mnemonic.Unpckhpd);
        Add<Addpd>(Mnemonic.Addpd); Add<Subpd>(Mnemonic.Subpd); Add<Mulpd>(Mnemonic.Mulpd); Add<Divpd>(Mnemonic.Divpd);
        Add<Minpd>(Mnemonic.Minpd); Add<Maxpd>(Mnemonic.Maxpd); Add<Sqrtpd>(Mnemonic.Sqrtpd);
        Add<Addsd>(Mnemonic.Addsd); Add<Subsd>(Mnemonic.Subsd); Add<Mulsd>(Mnemonic.Mulsd); Add<Divsd>(Mnemonic.Divsd);
        Add<Minsd>(Mnemonic.Minsd); Add<Maxsd>(Mnemonic.Maxsd); Add<Sqrtsd>(Mnemonic.Sqrtsd);
        Add<Addps>(Mnemonic.Addps); Add<Subps>(Mnemonic.Subps); Add<Mulps>(Mnemonic.Mulps); Add<Divps>(Mnemonic.Divps);
        Add<Minps>(Mnemonic.Minps); Add<Maxps>(Mnemonic.Maxps); Add<Sqrtps>(Mnemonic.Sqrtps);
        Add<Addss>(Mnemonic.Addss); Add<Subss>(Mnemonic.Subss); Add<Mulss>(Mnemonic.Mulss); Add<Divss>(Mnemonic.Divss);
        Add<Minss>(Mnemonic.Minss); Add<Maxss>(Mnemonic.Maxss); Add<Sqrtss>(Mnemonic.Sqrtss);
        Add<Cmppd>(Mnemonic.Cmppd); Add<Cmpps>(Mnemonic.Cmpps); Add<Cmpss>(Mnemonic.Cmpss);
        Add<Cvtsd2ss>(Mnemonic.Cvtsd2ss); Add<Cvtss2sd>(Mnemonic.Cvtss2sd); Add<Cvtdq2pd>(Mnemonic.Cvtdq2pd); Add<Cvtdq2ps>(Mnemonic.Cvtdq2ps);
        Add<Cvtps2pd>(Mnemonic.Cvtps2pd); Add<Cvtpd2ps>(Mnemonic.Cvtpd2ps); Add<Cvttps2dq>(Mnemonic.Cvttps2dq); Add<Cvtps2dq>(Mnemonic.Cvtps2dq);
        Add<Cvttpd2dq>(Mnemonic.Cvttpd2dq); Add<Cvtpd2dq>(Mnemonic.Cvtpd2dq);

        foreach (var m in new[] { Mnemonic.Movdqa, Mnemonic.Movaps, Mnemonic.Movapd, Mnemonic.Movntdq, Mnemonic.Movntps, Mnemonic.Movntpd, Mnemonic.Movntdqa })
            Binder.Add(m, (in Instruction i, Op* o) => BindMove128(i, o, aligned: true));
        foreach (var m in new[] { Mnemonic.Movdqu, Mnemonic.Movups, Mnemonic.Movupd, Mnemonic.Lddqu })
            Binder.Add(m, (in Instruction i, Op* o) => BindMove128(i, o, aligned: false));
        Binder.Add(Mnemonic.Movq, BindMovq);
        Binder.Add(Mnemonic.Movd, BindMovd);
        Binder.Add([Mnemonic.Movlps, Mnemonic.Movlpd], (in Instruction i, Op* o) => BindHalf(i, o, high: false));
        Binder.Add([Mnemonic.Movhps, Mnemonic.Movhpd], (in Instruction i, Op* o) => BindHalf(i, o, high: true));
        Binder.Add(Mnemonic.Movhlps, (in Instruction i, Op* o) => BindV2<Movhlps>(i, o, false));
        Binder.Add(Mnemonic.Movlhps, (in Instruction i, Op* o) => BindV2<MovHighFromLow>(i, o, false));
        Binder.Add(Mnemonic.Pmovmskb, (in Instruction i, Op* o) => BindMask(i, o, 0));
        Binder.Add(Mnemonic.Movmskps, (in Instruction i, Op* o) => BindMask(i, o, 1));
        Binder.Add(Mnemonic.Movmskpd, (in Instruction i, Op* o) => BindMask(i, o, 2));
        Binder.Add(Mnemonic.Pextrw, BindPextrw);
        Binder.Add(Mnemonic.Pinsrw, BindPinsrw);
        Binder.Add([Mnemonic.Ucomisd, Mnemonic.Comisd], (in Instruction i, Op* o) => BindUcomi(i, o, 0));
        Binder.Add([Mnemonic.Ucomiss, Mnemonic.Comiss], (in Instruction i, Op* o) => BindUcomi(i, o, 1));
        Binder.Add(Mnemonic.Cvtsi2sd, (in Instruction i, Op* o) => BindCvtSi2F(i, o, single: false));
        Binder.Add(Mnemonic.Cvtsi2ss, (in Instruction i, Op* o) => BindCvtSi2F(i, o, single: true));
        Binder.Add(Mnemonic.Cvttsd2si, (in Instruction i, Op* o) => BindCvtF2Si(i, o, 2, true));
        Binder.Add(Mnemonic.Cvtsd2si, (in Instruction i, Op* o) => BindCvtF2Si(i, o, 2, false));
        Binder.Add(Mnemonic.Cvttss2si, (in Instruction i, Op* o) => BindCvtF2Si(i, o, 3, true));
        Binder.Add(Mnemonic.Cvtss2si, (in Instruction i, Op* o) => BindCvtF2Si(i, o, 3, false));
        Binder.Add(Mnemonic.Ldmxcsr, (in Instruction i, Op* o) => BindMemOnly(i, o, &Ldmxcsr));
        Binder.Add(Mnemonic.Stmxcsr, (in Instruction i, Op* o) => BindMemOnly(i, o, &Stmxcsr));
        Binder.Add([Mnemonic.Fxsave, Mnemonic.Fxsave64], (in Instruction i, Op* o) => BindMemOnly(i, o, &Fxsave));
        Binder.Add([Mnemonic.Fxrstor, Mnemonic.Fxrstor64], (in Instruction i, Op* o) => BindMemOnly(i, o, &Fxrstor));
        Binder.Add(Mnemonic.Movnti, (in Instruction i, Op* o) =>
        {
            Operands.Mem(i, o);
            o->R = Gpr(i.Op1Register);
            o->H = i.Op1Register.GetSize() == 8 ? &Mov.MR<S64> : &Mov.MR<S32>;
            return true;
        });
        RegisterFp();   // last: the MXCSR-honouring floating-point handlers (Sse.Fp.cs) replace the plain ones
    }

    private static bool IsX(IReg r) => r.IsXMM() && r <= IReg.XMM15;
    private static byte Xi(IReg r) => (byte)(r - IReg.XMM0);

    private static byte Width(in Instruction ins, bool aligned) => ins.MemorySize.GetSize() switch
    {
        16 => aligned ? (byte)0 : (byte)1, 8 => 2, 4 => 3, 2 => 4, _ => 1,
    };

    private static void Add<O>(params Mnemonic[] ms) where O : struct, IV2
    {
        foreach (var m in ms) Binder.Add(m, (in Instruction i, Op* o) => BindV2<O>(i, o, true));
    }

    private static void AddShift<OX, OI>(Mnemonic m) where OX : struct, IV2 where OI : struct, IV2 =>
        Binder.Add(m, (in Instruction i, Op* o) => IsImm(i, 1) ? BindV2<OI>(i, o, true) : BindV2<OX>(i, o, true));

    private static bool BindV2<O>(in Instruction ins, Op* op, bool alignedMem) where O : struct, IV2
    {
        if (!IsReg(ins, 0) || !IsX(ins.Op0Register)) return false;
        op->R = Xi(ins.Op0Register);
        op->R2 = op->R;
        if (IsReg(ins, 1))
        {
            if (!IsX(ins.Op1Register)) return false;
            op->R2 = Xi(ins.Op1Register);
        }
        else if (IsMem(ins, 1))
        {
            Operands.Mem(ins, op);
            op->Y = 1;
            op->X = Width(ins, alignedMem);
        }
        int last = ins.OpCount - 1;
        if (last >= 1 && IsImm(ins, last)) op->Imm = (int)(ins.GetImmediate(last) & 0xFF);
        op->H = &V2<O>;
        return true;
    }

    private static bool BindMove128(in Instruction ins, Op* op, bool aligned)
    {
        if (IsReg(ins, 0)) return BindV2<Mov128>(ins, op, aligned);
        if (!IsReg(ins, 1) || !IsX(ins.Op1Register)) return false;
        Operands.Mem(ins, op);
        op->R = Xi(ins.Op1Register);
        op->X = aligned ? (byte)0 : (byte)1;
        op->H = &StoreM;
        return true;
    }

    // movss / movsd (SSE): register forms merge the low element; loads zero the rest.
    private static bool BindScalarMove(in Instruction ins, Op* op, byte width)
    {
        if (IsReg(ins, 0) && IsReg(ins, 1))
        {
            if (!IsX(ins.Op0Register) || !IsX(ins.Op1Register)) return false;
            op->R = Xi(ins.Op0Register);
            op->R2 = Xi(ins.Op1Register);
            op->H = width == 2 ? &V2<MovsdRR> : &V2<MovssRR>;
            return true;
        }
        Operands.Mem(ins, op);
        op->X = width;
        if (IsReg(ins, 0)) { op->R = Xi(ins.Op0Register); op->H = &LoadZx; }
        else { op->R = Xi(ins.Op1Register); op->H = &StoreM; }
        return true;
    }

    private static bool BindMovq(in Instruction ins, Op* op)
    {
        switch (ins.Code)
        {
            case Code.Movq_xmm_rm64:
                op->R = Xi(ins.Op0Register); op->X = 2;
                if (IsReg(ins, 1)) { op->R2 = Gpr(ins.Op1Register); op->H = &GprToXmm; }
                else { Operands.Mem(ins, op); op->H = &LoadZx; }
                return true;
            case Code.Movq_rm64_xmm:
                op->R = Xi(ins.Op1Register); op->X = 2;
                if (IsReg(ins, 0)) { op->R2 = Gpr(ins.Op0Register); op->H = &XmmToGpr; }
                else { Operands.Mem(ins, op); op->H = &StoreM; }
                return true;
            case Code.Movq_xmm_xmmm64:
                if (IsReg(ins, 1)) return BindV2<MovqLow>(ins, op, false);
                op->R = Xi(ins.Op0Register); op->X = 2; Operands.Mem(ins, op); op->H = &LoadZx;
                return true;
            case Code.Movq_xmmm64_xmm:
                if (IsReg(ins, 0)) { op->R = Xi(ins.Op0Register); op->R2 = Xi(ins.Op1Register); op->H = &V2<MovqLow>; return true; }
                op->R = Xi(ins.Op1Register); op->X = 2; Operands.Mem(ins, op); op->H = &StoreM;
                return true;
            default:
                return false;   // MMX forms
        }
    }

    private static bool BindMovd(in Instruction ins, Op* op)
    {
        switch (ins.Code)
        {
            case Code.Movd_xmm_rm32:
                op->R = Xi(ins.Op0Register); op->X = 3;
                if (IsReg(ins, 1)) { op->R2 = Gpr(ins.Op1Register); op->H = &GprToXmm; }
                else { Operands.Mem(ins, op); op->H = &LoadZx; }
                return true;
            case Code.Movd_rm32_xmm:
                op->R = Xi(ins.Op1Register); op->X = 3;
                if (IsReg(ins, 0)) { op->R2 = Gpr(ins.Op0Register); op->H = &XmmToGpr; }
                else { Operands.Mem(ins, op); op->H = &StoreM; }
                return true;
            default:
                return false;
        }
    }

    private static bool BindHalf(in Instruction ins, Op* op, bool high)
    {
        Operands.Mem(ins, op);
        if (IsReg(ins, 0)) { op->R = Xi(ins.Op0Register); op->H = high ? &LoadHigh : &LoadLow; }
        else { op->R = Xi(ins.Op1Register); op->X = 2; op->H = high ? &StoreHigh : &StoreM; }
        return true;
    }

    private static bool BindMask(in Instruction ins, Op* op, byte kind)
    {
        if (!IsX(ins.Op1Register)) return false;
        op->R2 = Gpr(ins.Op0Register);
        op->R = Xi(ins.Op1Register);
        op->X = kind;
        op->H = &MoveMask;
        return true;
    }

    private static bool BindPextrw(in Instruction ins, Op* op)
    {
        if (!IsReg(ins, 0) || !IsReg(ins, 1) || !IsX(ins.Op1Register)) return false;
        op->R2 = Gpr(ins.Op0Register);
        op->R = Xi(ins.Op1Register);
        op->Imm = ins.Immediate8;
        op->H = &Pextrw;
        return true;
    }

    private static bool BindPinsrw(in Instruction ins, Op* op)
    {
        if (!IsX(ins.Op0Register)) return false;
        op->R = Xi(ins.Op0Register);
        if (IsReg(ins, 1)) op->R2 = Gpr(ins.Op1Register); else { Operands.Mem(ins, op); op->Y = 1; }
        op->Imm = ins.Immediate8;
        op->H = &Pinsrw;
        return true;
    }

    private static bool BindUcomi(in Instruction ins, Op* op, byte kind)
    {
        op->R = Xi(ins.Op0Register);
        if (IsReg(ins, 1)) op->R2 = Xi(ins.Op1Register); else { Operands.Mem(ins, op); op->Y = 1; }
        op->X = kind;
        op->Imm = HostFp.For(ins.Code);
        if (op->Imm < 0) return false;
        op->H = &Ucomi;
        return true;
    }

    private static bool BindCvtSi2F(in Instruction ins, Op* op, bool single)
    {
        op->R = Xi(ins.Op0Register);
        int thunk = HostFp.For(ins.Code);
        if (thunk < 0) return false;
        op->Imm = (single ? 1 : 0) | thunk << 8;
        if (IsReg(ins, 1)) { op->R2 = Gpr(ins.Op1Register); op->X = ins.Op1Register.GetSize() == 8 ? (byte)2 : (byte)3; }
        else { Operands.Mem(ins, op); op->Y = 1; op->X = ins.MemorySize.GetSize() == 8 ? (byte)2 : (byte)3; }
        op->H = &CvtSi2F;
        return true;
    }

    private static bool BindCvtF2Si(in Instruction ins, Op* op, byte width, bool trunc)
    {
        op->R2 = Gpr(ins.Op0Register);
        op->X = width;
        int thunk = HostFp.For(ins.Code);
        if (thunk < 0) return false;
        op->Imm = (trunc ? 1 : 0) | (ins.Op0Register.GetSize() == 8 ? 2 : 0) | thunk << 8;
        if (IsReg(ins, 1)) op->R = Xi(ins.Op1Register); else { Operands.Mem(ins, op); op->Y = 1; }
        op->H = &CvtF2Si;
        return true;
    }

    private static bool BindMemOnly(in Instruction ins, Op* op, delegate*<CpuState*, Op*, Op*> h)
    {
        if (!IsMem(ins, 0)) return false;
        Operands.Mem(ins, op);
        op->H = h;
        return true;
    }
}
