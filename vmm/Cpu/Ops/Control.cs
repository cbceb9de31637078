using System.Runtime.CompilerServices;
using Iced.Intel;
using static ToyVmm.Cpu.Operands;

namespace ToyVmm.Cpu.Ops;

/// <summary>A condition code as a type parameter, so each jcc handler is compiled for its condition.</summary>
internal interface ICc { static abstract int Cc { get; } }
internal struct Co : ICc { public static int Cc => 0; }
internal struct Cno : ICc { public static int Cc => 1; }
internal struct Cb : ICc { public static int Cc => 2; }
internal struct Cae : ICc { public static int Cc => 3; }
internal struct Ce : ICc { public static int Cc => 4; }
internal struct Cne : ICc { public static int Cc => 5; }
internal struct Cbe : ICc { public static int Cc => 6; }
internal struct Ca : ICc { public static int Cc => 7; }
internal struct Cs : ICc { public static int Cc => 8; }
internal struct Cns : ICc { public static int Cc => 9; }
internal struct Cp : ICc { public static int Cc => 10; }
internal struct Cnp : ICc { public static int Cc => 11; }
internal struct Cl : ICc { public static int Cc => 12; }
internal struct Cge : ICc { public static int Cc => 13; }
internal struct Cle : ICc { public static int Cc => 14; }
internal struct Cg : ICc { public static int Cc => 15; }

/// <summary>Block ends, #UD, and control transfers (jmp, jcc, call, ret, loop, jrcxz).</summary>
internal static unsafe class Control
{
    /// <summary>
    /// The op after the last instruction of every block, and the handler an invalidated
    /// block's ops are replaced with: continue at this op's RIP (not an instruction itself).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* BailOut(CpuState* s, Op* op)
    {
        s->Rip = s->BlockVa + op->RipOff;
        s->Retired--;
        return null;
    }

    /// <summary>
    /// The one pointer to <see cref="BailOut"/> that invalidation stores into ops, so a handler can
    /// recognise an invalidated successor (DeadFlags.cs) by comparing with it.
    /// </summary>
    public static readonly delegate*<CpuState*, Op*, Op*> BailOutHandler = &BailOut;

    /// <summary>An invalid or unimplemented instruction: Disp holds up to 8 of its bytes, X their count, Imm its Iced code.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Ud(CpuState* s, Op* op)
    {
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < op->X; i++) sb.Append(i == 0 ? "" : " ").Append(((byte)(op->Disp >> (8 * i))).ToString("x2"));
        string what = op->Imm != 0 ? $" ({(Code)op->Imm} not implemented)" : " (invalid opcode)";
        throw GuestFault.Ud($"bytes {sb}{what}");
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong NextRip(CpuState* s, Op* op) => s->BlockVa + op->RipOff + op->Len;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Jmp(CpuState* s, Op* op) => Exec.Branch(s, op, (ulong)op->Disp);
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* JmpR(CpuState* s, Op* op) => Exec.ChainTo(s, op, Reg.Q(s, op->R));
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* JmpM(CpuState* s, Op* op) { s->Rip = Mem.Read<S64>(s, Mem.Ea(s, op)); return Exec.Chain(s, op); }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Jcc<C>(CpuState* s, Op* op) where C : struct, ICc
    {
        // No call on the fast path: the handler then needs no callee-saved registers.
        int taken = Flags.CondFast(s, C.Cc);
        if (taken < 0) return JccSlow<C>(s, op);
        return Exec.Branch(s, op, Target(s, op, taken));
    }

    /// <summary>
    /// The RIP after jcc <paramref name="op"/>: its target when <paramref name="taken"/> is 1, the
    /// next instruction when 0. A branch, not a select: a branchless select measured 15% slower
    /// on cpusuite (bench/RESULTS.md), as the jump-cache probe then waits for the comparison
    /// instead of running ahead on the predicted direction.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong Target(CpuState* s, Op* op, int taken)
    {
        return taken != 0 ? (ulong)op->Disp : NextRip(s, op);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    internal static Op* JccSlow<C>(CpuState* s, Op* op) where C : struct, ICc
    {
        s->Rip = Flags.Slow(s, C.Cc) ? (ulong)op->Disp : NextRip(s, op);
        return Exec.Chain(s, op);
    }

    private static void Push(CpuState* s, ulong v)
    {
        ulong rsp = s->Regs[4] - 8;
        Mem.Write<S64>(s, rsp, v);
        s->Regs[4] = rsp;
    }

    // call rel/r and ret: the stack access's TLB hit without a call (no callee-saved registers on
    // the fast path); a miss or a page-crossing access goes to the ...Slow variant.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Call(CpuState* s, Op* op)
    {
        ulong rsp = Reg.Q(s, 4) - 8;
        if (!Mem.TryWrite<S64>(s, rsp, NextRip(s, op))) return CallSlow(s, op);
        Reg.Q(s, 4) = rsp;
        return Exec.ChainTo(s, op, (ulong)op->Disp);
    }
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* CallSlow(CpuState* s, Op* op) { Push(s, NextRip(s, op)); s->Rip = (ulong)op->Disp; return Exec.Chain(s, op); }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* CallR(CpuState* s, Op* op)
    {
        ulong t = Reg.Q(s, op->R);
        ulong rsp = Reg.Q(s, 4) - 8;
        if (!Mem.TryWrite<S64>(s, rsp, NextRip(s, op))) return CallRSlow(s, op);
        Reg.Q(s, 4) = rsp;
        return Exec.ChainTo(s, op, t);
    }
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* CallRSlow(CpuState* s, Op* op) { ulong t = s->Regs[op->R]; Push(s, NextRip(s, op)); s->Rip = t; return Exec.Chain(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* CallM(CpuState* s, Op* op) { ulong t = Mem.Read<S64>(s, Mem.Ea(s, op)); Push(s, NextRip(s, op)); s->Rip = t; return Exec.Chain(s, op); }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Ret(CpuState* s, Op* op)
    {
        ulong sp = Reg.Q(s, 4);
        if (!Mem.TryRead<S64>(s, sp, out ulong target)) return RetSlow(s, op);
        Reg.Q(s, 4) = sp + 8 + (ushort)op->Imm;
        return Exec.ChainTo(s, op, target);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* RetSlow(CpuState* s, Op* op)
    {
        ulong rsp = s->Regs[4];
        s->Rip = Mem.Read<S64>(s, rsp);
        s->Regs[4] = rsp + 8 + (ushort)op->Imm;
        return Exec.Chain(s, op);
    }

    // loop/loope/loopne: X = 0/1/2; Y = 4 with the 0x67 prefix (ECX counts, written zero-extended).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Loop(CpuState* s, Op* op)
    {
        ulong c = op->Y == 4 ? (uint)(s->Regs[1] - 1) : s->Regs[1] - 1;
        s->Regs[1] = c;
        bool take = c != 0 && (op->X == 0 || (op->X == 1 && Flags.Cond(s, 4)) || (op->X == 2 && Flags.Cond(s, 5)));
        s->Rip = take ? (ulong)op->Disp : NextRip(s, op);
        return Exec.Chain(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Jrcxz(CpuState* s, Op* op)
    {
        bool zero = op->Y == 4 ? (uint)s->Regs[1] == 0 : s->Regs[1] == 0;
        s->Rip = zero ? (ulong)op->Disp : NextRip(s, op);
        return Exec.Chain(s, op);
    }

    private static bool BindJcc(in Instruction ins, Op* op)
    {
        op->Disp = (long)ins.NearBranchTarget;
        op->H = ins.ConditionCode.ToCc() switch
        {
            0 => &Jcc<Co>, 1 => &Jcc<Cno>, 2 => &Jcc<Cb>, 3 => &Jcc<Cae>, 4 => &Jcc<Ce>, 5 => &Jcc<Cne>, 6 => &Jcc<Cbe>, 7 => &Jcc<Ca>,
            8 => &Jcc<Cs>, 9 => &Jcc<Cns>, 10 => &Jcc<Cp>, 11 => &Jcc<Cnp>, 12 => &Jcc<Cl>, 13 => &Jcc<Cge>, 14 => &Jcc<Cle>, _ => &Jcc<Cg>,
        };
        return true;
    }

    // jmp/call far through memory: X = offset bytes (2, 4, 8), Y = 1 for call. Ends the block
    // without chaining (like retf): a far transfer is rare and may change CS.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* FarM(CpuState* s, Op* op)
    {
        Vcpu.Of(s).FarTransfer(Mem.Ea(s, op), op->X, op->Y == 1, NextRip(s, op));
        return null;
    }

    private static bool BindJmpCall(in Instruction ins, Op* op, bool call)
    {
        if (ins.Code is Code.Jmp_m1616 or Code.Jmp_m1632 or Code.Jmp_m1664 or Code.Call_m1616 or Code.Call_m1632 or Code.Call_m1664)
        {
            Operands.Mem(ins, op);
            op->X = (byte)(ins.Code is Code.Jmp_m1616 or Code.Call_m1616 ? 2 : ins.Code is Code.Jmp_m1632 or Code.Call_m1632 ? 4 : 8);
            op->Y = (byte)(call ? 1 : 0);
            op->H = &FarM;
            return true;
        }
        var k = ins.Op0Kind;
        if (k is OpKind.NearBranch64) { op->Disp = (long)ins.NearBranchTarget; op->H = call ? &Call : &Jmp; return true; }
        if (k == OpKind.Register && ins.Op0Register.GetSize() == 8) { op->R = Gpr(ins.Op0Register); op->H = call ? &CallR : &JmpR; return true; }
        if (k == OpKind.Memory && ins.Code is Code.Jmp_rm64 or Code.Call_rm64) { Operands.Mem(ins, op); op->H = call ? &CallM : &JmpM; return true; }
        return false;   // far forms and 16/32-bit near forms
    }

    private static bool BindRet(in Instruction ins, Op* op)
    {
        if (ins.Code is not (Code.Retnq or Code.Retnq_imm16)) return false;
        op->Imm = ins.OpCount > 0 ? (int)ins.Immediate16 : 0;
        op->H = &Ret;
        return true;
    }

    private static bool BindLoop(in Instruction ins, Op* op, byte kind)
    {
        if (ins.Code is Code.Loop_rel8_64_ECX or Code.Loope_rel8_64_ECX or Code.Loopne_rel8_64_ECX) op->Y = 4;
        else if (ins.Code is not (Code.Loop_rel8_64_RCX or Code.Loope_rel8_64_RCX or Code.Loopne_rel8_64_RCX)) return false;
        op->Disp = (long)ins.NearBranchTarget;
        op->X = kind;
        op->H = &Loop;
        return true;
    }

    public static void Register()
    {
        Binder.Add([Mnemonic.Jo, Mnemonic.Jno, Mnemonic.Jb, Mnemonic.Jae, Mnemonic.Je, Mnemonic.Jne, Mnemonic.Jbe, Mnemonic.Ja,
            Mnemonic.Js, Mnemonic.Jns, Mnemonic.Jp, Mnemonic.Jnp, Mnemonic.Jl, Mnemonic.Jge, Mnemonic.Jle, Mnemonic.Jg], BindJcc, endsBlock: true);
        Binder.Add(Mnemonic.Jmp, (in Instruction i, Op* o) => BindJmpCall(i, o, false), endsBlock: true);
        Binder.Add(Mnemonic.Call, (in Instruction i, Op* o) => BindJmpCall(i, o, true), endsBlock: true);
        Binder.Add(Mnemonic.Ret, BindRet, endsBlock: true);
        Binder.Add(Mnemonic.Loop, (in Instruction i, Op* o) => BindLoop(i, o, 0), endsBlock: true);
        Binder.Add(Mnemonic.Loope, (in Instruction i, Op* o) => BindLoop(i, o, 1), endsBlock: true);
        Binder.Add(Mnemonic.Loopne, (in Instruction i, Op* o) => BindLoop(i, o, 2), endsBlock: true);
        Binder.Add(Mnemonic.Jrcxz, (in Instruction i, Op* o) => { o->Disp = (long)i.NearBranchTarget; o->Y = 8; o->H = &Jrcxz; return true; }, endsBlock: true);
        Binder.Add(Mnemonic.Jecxz, (in Instruction i, Op* o) => { o->Disp = (long)i.NearBranchTarget; o->Y = 4; o->H = &Jrcxz; return true; }, endsBlock: true);
    }
}
