using System.Runtime.CompilerServices;
using Iced.Intel;
using static ToyVmm.Cpu.Operands;

namespace ToyVmm.Cpu.Ops;

/// <summary>Data movement: mov, movzx, movsx, movsxd, lea, cmov, setcc, bswap, cbw..cqo, lahf/sahf, nops.</summary>
internal static unsafe class Mov
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* RR<T>(CpuState* s, Op* op) where T : struct, ISz { Reg.Set<T>(s, op->R, Reg.Get<T>(s, op->R2)); return Exec.Next(s, op); }

    // Hot memory forms have a fast variant with no call but the tail call to the next op (so no
    // callee-saved registers to spill) and fall back to the general variant on a TLB miss.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* RM<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        if (!Mem.TryRead<T>(s, Mem.Ea(s, op), out ulong v)) return RMSlow<T>(s, op);
        Reg.Set<T>(s, op->R, v);
        return Exec.Next(s, op);
    }
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* RMSlow<T>(CpuState* s, Op* op) where T : struct, ISz { Reg.Set<T>(s, op->R, Mem.Read<T>(s, Mem.Ea(s, op))); return Exec.Next(s, op); }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* MR<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        if (!Mem.TryWrite<T>(s, Mem.Ea(s, op), Reg.Get<T>(s, op->R))) return MRSlow<T>(s, op);
        return Exec.Next(s, op);
    }
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* MRSlow<T>(CpuState* s, Op* op) where T : struct, ISz { Mem.Write<T>(s, Mem.Ea(s, op), Reg.Get<T>(s, op->R)); return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* RI<T>(CpuState* s, Op* op) where T : struct, ISz { Reg.Set<T>(s, op->R, (ulong)(long)op->Imm); return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* RI64(CpuState* s, Op* op) { s->Regs[op->R] = (ulong)op->Disp; return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* MI<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        if (!Mem.TryWrite<T>(s, Mem.Ea(s, op), (ulong)(long)op->Imm)) return MISlow<T>(s, op);
        return Exec.Next(s, op);
    }
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* MISlow<T>(CpuState* s, Op* op) where T : struct, ISz { Mem.Write<T>(s, Mem.Ea(s, op), (ulong)(long)op->Imm); return Exec.Next(s, op); }

    // movzx / movsx / movsxd: D is the destination size, S the source size.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* ZxR<D, S>(CpuState* s, Op* op) where D : struct, ISz where S : struct, ISz { Reg.Set<D>(s, op->R, Reg.Get<S>(s, op->R2)); return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* ZxM<D, S>(CpuState* s, Op* op) where D : struct, ISz where S : struct, ISz
    {
        if (!Mem.TryRead<S>(s, Mem.Ea(s, op), out ulong v)) return ZxMSlow<D, S>(s, op);
        Reg.Set<D>(s, op->R, v);
        return Exec.Next(s, op);
    }
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* ZxMSlow<D, S>(CpuState* s, Op* op) where D : struct, ISz where S : struct, ISz { Reg.Set<D>(s, op->R, Mem.Read<S>(s, Mem.Ea(s, op))); return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* SxR<D, S>(CpuState* s, Op* op) where D : struct, ISz where S : struct, ISz { Reg.Set<D>(s, op->R, (ulong)Reg.SignExtend<S>(Reg.Get<S>(s, op->R2))); return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* SxM<D, S>(CpuState* s, Op* op) where D : struct, ISz where S : struct, ISz
    {
        if (!Mem.TryRead<S>(s, Mem.Ea(s, op), out ulong v)) return SxMSlow<D, S>(s, op);
        Reg.Set<D>(s, op->R, (ulong)Reg.SignExtend<S>(v));
        return Exec.Next(s, op);
    }
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* SxMSlow<D, S>(CpuState* s, Op* op) where D : struct, ISz where S : struct, ISz { Reg.Set<D>(s, op->R, (ulong)Reg.SignExtend<S>(Mem.Read<S>(s, Mem.Ea(s, op)))); return Exec.Next(s, op); }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Lea<T>(CpuState* s, Op* op) where T : struct, ISz { Reg.Set<T>(s, op->R, Mem.Ea(s, op)); return Exec.Next(s, op); }

    // cmovcc: the destination is written (zero-extending a 32-bit register) whatever the condition.
    // cmov/setc with a register: the common conditions without a call (Flags.CondFast), so the
    // handler saves no callee-saved registers; the rest in the ...Slow variant.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* CmovR<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        int c = Flags.CondFast(s, op->X);
        if (c < 0) return CmovRSlow<T>(s, op);
        Reg.Set<T>(s, op->R, c != 0 ? Reg.Get<T>(s, op->R2) : Reg.Get<T>(s, op->R));
        return Exec.Next(s, op);
    }
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* CmovRSlow<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        ulong v = Flags.Slow(s, op->X) ? Reg.Get<T>(s, op->R2) : Reg.Get<T>(s, op->R);
        Reg.Set<T>(s, op->R, v);
        return Exec.Next(s, op);
    }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* CmovM<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        ulong m = Mem.Read<T>(s, Mem.Ea(s, op));
        Reg.Set<T>(s, op->R, Flags.Cond(s, op->X) ? m : Reg.Get<T>(s, op->R));
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* SetR(CpuState* s, Op* op)
    {
        int c = Flags.CondFast(s, op->X);
        if (c < 0) return SetRSlow(s, op);
        ((byte*)s->Regs)[op->R] = (byte)c;
        return Exec.Next(s, op);
    }
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* SetRSlow(CpuState* s, Op* op) { ((byte*)s->Regs)[op->R] = Flags.Slow(s, op->X) ? (byte)1 : (byte)0; return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* SetM(CpuState* s, Op* op) { Mem.Write<S8>(s, Mem.Ea(s, op), Flags.Cond(s, op->X) ? 1UL : 0); return Exec.Next(s, op); }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Bswap32(CpuState* s, Op* op) { s->Regs[op->R] = System.Buffers.Binary.BinaryPrimitives.ReverseEndianness((uint)s->Regs[op->R]); return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Bswap64(CpuState* s, Op* op) { s->Regs[op->R] = System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(s->Regs[op->R]); return Exec.Next(s, op); }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Cbw(CpuState* s, Op* op) { *(ushort*)&s->Regs[0] = (ushort)(sbyte)s->Regs[0]; return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Cwde(CpuState* s, Op* op) { s->Regs[0] = (uint)(short)s->Regs[0]; return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Cdqe(CpuState* s, Op* op) { s->Regs[0] = (ulong)(int)s->Regs[0]; return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Cwd(CpuState* s, Op* op) { *(ushort*)&s->Regs[2] = (short)s->Regs[0] < 0 ? (ushort)0xFFFF : (ushort)0; return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Cdq(CpuState* s, Op* op) { s->Regs[2] = (int)s->Regs[0] < 0 ? 0xFFFF_FFFFUL : 0; return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Cqo(CpuState* s, Op* op) { s->Regs[2] = (long)s->Regs[0] < 0 ? ulong.MaxValue : 0; return Exec.Next(s, op); }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Lahf(CpuState* s, Op* op) { ((byte*)s->Regs)[1] = (byte)(Flags.Read(s) & 0xD7 | 2); return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Sahf(CpuState* s, Op* op) { Flags.Merge(s, ((byte*)s->Regs)[1], Flags.CF | Flags.PF | Flags.AF | Flags.ZF | Flags.SF); return Exec.Next(s, op); }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Nop(CpuState* s, Op* op) => Exec.Next(s, op);

    private static bool BindMov(in Instruction ins, Op* op)
    {
        int lg = Log(Size(ins, 0));
        if (IsReg(ins, 0) && !IsGpr(ins.Op0Register)) return SystemOps.BindMovSpecial(ins, op);
        if (IsReg(ins, 1) && !IsGpr(ins.Op1Register)) return SystemOps.BindMovSpecial(ins, op);
        if (IsReg(ins, 0))
        {
            op->R = Gpr(ins.Op0Register);
            if (IsReg(ins, 1)) { op->R2 = Gpr(ins.Op1Register); op->H = lg switch { 0 => &RR<S8>, 1 => &RR<S16>, 2 => &RR<S32>, _ => &RR<S64> }; }
            else if (IsMem(ins, 1)) { Operands.Mem(ins, op); op->H = lg switch { 0 => &RM<S8>, 1 => &RM<S16>, 2 => &RM<S32>, _ => &RM<S64> }; }
            else if (ins.Op1Kind == OpKind.Immediate64) { op->Disp = (long)ins.Immediate64; op->H = &RI64; }
            else { op->Imm = (int)Imm(ins, 1); op->H = lg switch { 0 => &RI<S8>, 1 => &RI<S16>, 2 => &RI<S32>, _ => &RI<S64> }; }
            return true;
        }
        if (!IsMem(ins, 0)) return false;
        Operands.Mem(ins, op);
        if (IsReg(ins, 1)) { op->R = Gpr(ins.Op1Register); op->H = lg switch { 0 => &MR<S8>, 1 => &MR<S16>, 2 => &MR<S32>, _ => &MR<S64> }; }
        else { op->Imm = (int)Imm(ins, 1); op->H = lg switch { 0 => &MI<S8>, 1 => &MI<S16>, 2 => &MI<S32>, _ => &MI<S64> }; }
        return true;
    }

    private static bool BindExtend(in Instruction ins, Op* op, bool signed)
    {
        int d = Log(Size(ins, 0)), sz = Log(Size(ins, 1));
        op->R = Gpr(ins.Op0Register);
        bool reg = IsReg(ins, 1);
        if (reg) op->R2 = Gpr(ins.Op1Register); else Operands.Mem(ins, op);
        op->H = (signed, reg, d, sz) switch
        {
            (false, true, 1, 0) => &ZxR<S16, S8>, (false, true, 2, 0) => &ZxR<S32, S8>, (false, true, 3, 0) => &ZxR<S64, S8>,
            (false, true, 2, 1) => &ZxR<S32, S16>, (false, true, 3, 1) => &ZxR<S64, S16>, (false, true, 1, 1) => &ZxR<S16, S16>,
            (false, false, 1, 0) => &ZxM<S16, S8>, (false, false, 2, 0) => &ZxM<S32, S8>, (false, false, 3, 0) => &ZxM<S64, S8>,
            (false, false, 2, 1) => &ZxM<S32, S16>, (false, false, 3, 1) => &ZxM<S64, S16>, (false, false, 1, 1) => &ZxM<S16, S16>,
            (true, true, 1, 0) => &SxR<S16, S8>, (true, true, 2, 0) => &SxR<S32, S8>, (true, true, 3, 0) => &SxR<S64, S8>,
            (true, true, 2, 1) => &SxR<S32, S16>, (true, true, 3, 1) => &SxR<S64, S16>, (true, true, 3, 2) => &SxR<S64, S32>,
            (true, true, 2, 2) => &SxR<S32, S32>, (true, true, 1, 1) => &SxR<S16, S16>,
            (true, false, 1, 0) => &SxM<S16, S8>, (true, false, 2, 0) => &SxM<S32, S8>, (true, false, 3, 0) => &SxM<S64, S8>,
            (true, false, 2, 1) => &SxM<S32, S16>, (true, false, 3, 1) => &SxM<S64, S16>, (true, false, 3, 2) => &SxM<S64, S32>,
            (true, false, 2, 2) => &SxM<S32, S32>, (true, false, 1, 1) => &SxM<S16, S16>,
            _ => null,
        };
        return op->H != null;
    }

    private static bool BindLea(in Instruction ins, Op* op)
    {
        op->R = Gpr(ins.Op0Register);
        Operands.Mem(ins, op, ignoreSegment: true);
        op->H = Log(Size(ins, 0)) switch { 1 => &Lea<S16>, 2 => &Lea<S32>, _ => &Lea<S64> };
        return true;
    }

    private static bool BindCmov(in Instruction ins, Op* op)
    {
        int lg = Log(Size(ins, 0));
        op->X = (byte)ins.ConditionCode.ToCc();
        op->R = Gpr(ins.Op0Register);
        if (IsReg(ins, 1)) { op->R2 = Gpr(ins.Op1Register); op->H = lg switch { 1 => &CmovR<S16>, 2 => &CmovR<S32>, _ => &CmovR<S64> }; }
        else { Operands.Mem(ins, op); op->H = lg switch { 1 => &CmovM<S16>, 2 => &CmovM<S32>, _ => &CmovM<S64> }; }
        return true;
    }

    private static bool BindSet(in Instruction ins, Op* op)
    {
        op->X = (byte)ins.ConditionCode.ToCc();
        if (IsReg(ins, 0)) { op->R = Gpr(ins.Op0Register); op->H = &SetR; }
        else { Operands.Mem(ins, op); op->H = &SetM; }
        return true;
    }

    private static BindFn Simple(delegate*<CpuState*, Op*, Op*> h) => (in Instruction ins, Op* op) => { op->H = h; return true; };

    public static void Register()
    {
        Binder.Add(Mnemonic.Mov, BindMov);
        Binder.Add(Mnemonic.Movzx, (in Instruction i, Op* o) => BindExtend(i, o, false));
        Binder.Add(Mnemonic.Movsx, (in Instruction i, Op* o) => BindExtend(i, o, true));
        Binder.Add(Mnemonic.Movsxd, (in Instruction i, Op* o) => BindExtend(i, o, true));
        Binder.Add(Mnemonic.Lea, BindLea);
        Binder.Add([Mnemonic.Cmovo, Mnemonic.Cmovno, Mnemonic.Cmovb, Mnemonic.Cmovae, Mnemonic.Cmove, Mnemonic.Cmovne, Mnemonic.Cmovbe, Mnemonic.Cmova,
            Mnemonic.Cmovs, Mnemonic.Cmovns, Mnemonic.Cmovp, Mnemonic.Cmovnp, Mnemonic.Cmovl, Mnemonic.Cmovge, Mnemonic.Cmovle, Mnemonic.Cmovg], BindCmov);
        Binder.Add([Mnemonic.Seto, Mnemonic.Setno, Mnemonic.Setb, Mnemonic.Setae, Mnemonic.Sete, Mnemonic.Setne, Mnemonic.Setbe, Mnemonic.Seta,
            Mnemonic.Sets, Mnemonic.Setns, Mnemonic.Setp, Mnemonic.Setnp, Mnemonic.Setl, Mnemonic.Setge, Mnemonic.Setle, Mnemonic.Setg], BindSet);
        Binder.Add(Mnemonic.Bswap, (in Instruction i, Op* o) =>
        {
            o->R = Gpr(i.Op0Register);
            if (i.Op0Register.GetSize() == 8) o->H = &Bswap64;
            else if (i.Op0Register.GetSize() == 4) o->H = &Bswap32;
            else return false;
            return true;
        });
        Binder.Add(Mnemonic.Cbw, Simple(&Cbw));
        Binder.Add(Mnemonic.Cwde, Simple(&Cwde));
        Binder.Add(Mnemonic.Cdqe, Simple(&Cdqe));
        Binder.Add(Mnemonic.Cwd, Simple(&Cwd));
        Binder.Add(Mnemonic.Cdq, Simple(&Cdq));
        Binder.Add(Mnemonic.Cqo, Simple(&Cqo));
        Binder.Add(Mnemonic.Lahf, Simple(&Lahf));
        Binder.Add(Mnemonic.Sahf, Simple(&Sahf));
        Binder.Add([Mnemonic.Nop, Mnemonic.Pause, Mnemonic.Endbr64, Mnemonic.Endbr32, Mnemonic.Prefetchnta, Mnemonic.Prefetcht0,
            Mnemonic.Prefetcht1, Mnemonic.Prefetcht2, Mnemonic.Prefetchw, Mnemonic.Lfence, Mnemonic.Sfence, Mnemonic.Wbinvd,
            Mnemonic.Invd, Mnemonic.Clflush, Mnemonic.Clflushopt, Mnemonic.Clwb, Mnemonic.Reservednop], Simple(&Nop));
        Binder.Add(Mnemonic.Mfence, Simple(&SystemOps.Mfence));
    }
}

internal static class CcExtensions
{
    /// <summary>Iced condition code to the x86 condition-code nibble.</summary>
    public static int ToCc(this ConditionCode c) => c switch
    {
        ConditionCode.o => 0, ConditionCode.no => 1, ConditionCode.b => 2, ConditionCode.ae => 3,
        ConditionCode.e => 4, ConditionCode.ne => 5, ConditionCode.be => 6, ConditionCode.a => 7,
        ConditionCode.s => 8, ConditionCode.ns => 9, ConditionCode.p => 10, ConditionCode.np => 11,
        ConditionCode.l => 12, ConditionCode.ge => 13, ConditionCode.le => 14, ConditionCode.g => 15,
        _ => throw new ArgumentOutOfRangeException(nameof(c)),
    };
}
