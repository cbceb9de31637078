using System.Runtime.CompilerServices;
using Iced.Intel;
using static ToyVmm.Cpu.Operands;

namespace ToyVmm.Cpu.Ops;

/// <summary>
/// push, pop, pushf, popf, enter, leave with 64- and 16-bit operand size (the stack address
/// size is always 64 in long mode; RSP changes only after the memory access succeeds).
/// </summary>
internal static unsafe class Stack
{
    public static void Push(CpuState* s, ulong v)
    {
        ulong rsp = s->Regs[4] - 8;
        Mem.Write<S64>(s, rsp, v);
        s->Regs[4] = rsp;
    }

    public static ulong Pop(CpuState* s)
    {
        ulong rsp = s->Regs[4];
        ulong v = Mem.Read<S64>(s, rsp);
        s->Regs[4] = rsp + 8;
        return v;
    }

    // push r/imm and pop r: the TLB hit without a call (no callee-saved registers to save on the
    // fast path); a miss or a page-crossing access goes to the ...Slow variant.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* PushR(CpuState* s, Op* op)
    {
        ulong rsp = Reg.Q(s, 4) - 8;
        if (!Mem.TryWrite<S64>(s, rsp, Reg.Q(s, op->R))) return PushRSlow(s, op);
        Reg.Q(s, 4) = rsp;
        return Exec.Next(s, op);
    }
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* PushRSlow(CpuState* s, Op* op) { Push(s, s->Regs[op->R]); return Exec.Next(s, op); }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* PushI(CpuState* s, Op* op)
    {
        ulong rsp = Reg.Q(s, 4) - 8;
        if (!Mem.TryWrite<S64>(s, rsp, (ulong)(long)op->Imm)) return PushISlow(s, op);
        Reg.Q(s, 4) = rsp;
        return Exec.Next(s, op);
    }
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* PushISlow(CpuState* s, Op* op) { Push(s, (ulong)(long)op->Imm); return Exec.Next(s, op); }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* PushM(CpuState* s, Op* op) { Push(s, Mem.Read<S64>(s, Mem.Ea(s, op))); return Exec.Next(s, op); }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* PopR(CpuState* s, Op* op)
    {
        ulong rsp = Reg.Q(s, 4);
        if (!Mem.TryRead<S64>(s, rsp, out ulong v)) return PopRSlow(s, op);
        Reg.Q(s, 4) = rsp + 8;
        Reg.Q(s, op->R) = v;   // after RSP: pop rsp loads the popped value
        return Exec.Next(s, op);
    }
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* PopRSlow(CpuState* s, Op* op) { ulong v = Pop(s); s->Regs[op->R] = v; return Exec.Next(s, op); }

    // pop m64: the address is computed with RSP already incremented.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* PopM(CpuState* s, Op* op)
    {
        ulong old = s->Regs[4];
        ulong v = Mem.Read<S64>(s, old);
        s->Regs[4] = old + 8;
        try { Mem.Write<S64>(s, Mem.Ea(s, op), v); }
        catch { s->Regs[4] = old; throw; }
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Pushf(CpuState* s, Op* op) { Push(s, Flags.Read(s) & ~(Flags.RF | 0x20000UL)); return Exec.Next(s, op); }

    // popfq: at CPL 3, IOPL and IF stay (IOPL = 0 is assumed for user mode).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Popf(CpuState* s, Op* op)
    {
        ulong v = Mem.Read<S64>(s, s->Regs[4]);
        s->Regs[4] += 8;
        ulong keep = s->Cpl == 0 ? 0 : Flags.IOPL | Flags.IF;
        ulong cur = Flags.Read(s);
        Flags.Write(s, (v & ~keep & ~Flags.RF) | (cur & keep));
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Leave(CpuState* s, Op* op)
    {
        ulong rbp = Reg.Q(s, 5);
        if (!Mem.TryRead<S64>(s, rbp, out ulong v)) return LeaveSlow(s, op);
        Reg.Q(s, 4) = rbp + 8;
        Reg.Q(s, 5) = v;
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* LeaveSlow(CpuState* s, Op* op)
    {
        ulong rbp = s->Regs[5];
        ulong v = Mem.Read<S64>(s, rbp);
        s->Regs[4] = rbp + 8;
        s->Regs[5] = v;
        return Exec.Next(s, op);
    }

    // enter imm16, imm8 (nesting level 0 and 1..31 as the manual describes).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Enter(CpuState* s, Op* op) => EnterOf<S64>(s, op);

    // 16-bit operand size (66 prefix): two bytes move, RSP still changes as a 64-bit register.
    public static void Push16(CpuState* s, ulong v)
    {
        ulong rsp = s->Regs[4] - 2;
        Mem.Write<S16>(s, rsp, v);
        s->Regs[4] = rsp;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* PushR16(CpuState* s, Op* op) { Push16(s, s->Regs[op->R]); return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* PushI16(CpuState* s, Op* op) { Push16(s, (ulong)op->Imm); return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* PushM16(CpuState* s, Op* op) { Push16(s, Mem.Read<S16>(s, Mem.Ea(s, op))); return Exec.Next(s, op); }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* PopR16(CpuState* s, Op* op)
    {
        ulong rsp = s->Regs[4];
        ulong v = Mem.Read<S16>(s, rsp);
        s->Regs[4] = rsp + 2;
        Reg.Set<S16>(s, op->R, v);   // pop sp: the loaded value wins over the increment
        return Exec.Next(s, op);
    }

    // pop m16: the address is computed with RSP already incremented.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* PopM16(CpuState* s, Op* op)
    {
        ulong old = s->Regs[4];
        ulong v = Mem.Read<S16>(s, old);
        s->Regs[4] = old + 2;
        try { Mem.Write<S16>(s, Mem.Ea(s, op), v); }
        catch { s->Regs[4] = old; throw; }
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Pushf16(CpuState* s, Op* op) { Push16(s, Flags.Read(s) & 0xFFFF); return Exec.Next(s, op); }

    // popfw: the low 16 bits of RFLAGS; at CPL 3, IOPL and IF stay as in popfq.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Popf16(CpuState* s, Op* op)
    {
        ulong v = Mem.Read<S16>(s, s->Regs[4]);
        s->Regs[4] += 2;
        ulong keep = ~0xFFFFUL | (s->Cpl == 0 ? 0 : Flags.IOPL | Flags.IF);
        ulong cur = Flags.Read(s);
        Flags.Write(s, (v & ~keep) | (cur & keep));
        return Exec.Next(s, op);
    }

    // leavew: RSP = RBP, then BP = a 16-bit pop (the upper bits of RBP stay).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Leave16(CpuState* s, Op* op)
    {
        ulong rbp = s->Regs[5];
        ulong v = Mem.Read<S16>(s, rbp);
        s->Regs[4] = rbp + 2;
        Reg.Set<S16>(s, 5, v);
        return Exec.Next(s, op);
    }

    // enterw imm16, imm8: 16-bit pushes of BP, of the outer frame pointers and of the frame
    // temp; BP gets the low 16 bits of the frame temp, RSP moves as a 64-bit register.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Enter16(CpuState* s, Op* op) => EnterOf<S16>(s, op);

    // enter of operand size T: pushes of T of RBP, of the outer frame pointers and of the
    // frame temp; the frame pointer gets the frame temp as a T write, RSP moves by 64 bits.
    private static Op* EnterOf<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        ulong size = (ulong)(T.Bits / 8);
        ulong rsp = s->Regs[4], rbp = s->Regs[5];
        int level = op->X & 31;
        ulong frame = rsp - size;
        Mem.Write<T>(s, frame, rbp);
        ulong cur = frame;
        for (int i = 1; i < level; i++)
        {
            rbp -= size;
            cur -= size;
            Mem.Write<T>(s, cur, Mem.Read<T>(s, rbp));
        }
        if (level > 0) { cur -= size; Mem.Write<T>(s, cur, frame); }
        Reg.Set<T>(s, 5, frame);
        s->Regs[4] = cur - (ushort)op->Imm;
        return Exec.Next(s, op);
    }

    private static bool BindPush(in Instruction ins, Op* op)
    {
        if (ins.Code is Code.Push_r64 or Code.Push_rm64 && IsReg(ins, 0)) { op->R = Gpr(ins.Op0Register); op->H = &PushR; return true; }
        if (ins.Code == Code.Push_rm64) { Operands.Mem(ins, op); op->H = &PushM; return true; }
        if (ins.Code is Code.Pushq_imm32 or Code.Pushq_imm8) { op->Imm = (int)Imm(ins, 0); op->H = &PushI; return true; }
        if (ins.Code is Code.Push_r16 or Code.Push_rm16 && IsReg(ins, 0)) { op->R = Gpr(ins.Op0Register); op->H = &PushR16; return true; }
        if (ins.Code == Code.Push_rm16) { Operands.Mem(ins, op); op->H = &PushM16; return true; }
        if (ins.Code is Code.Push_imm16 or Code.Pushw_imm8) { op->Imm = (ushort)ins.GetImmediate(0); op->H = &PushI16; return true; }
        return false;   // segment pushes
    }

    private static bool BindPop(in Instruction ins, Op* op)
    {
        if (ins.Code is Code.Pop_r64 or Code.Pop_rm64 && IsReg(ins, 0)) { op->R = Gpr(ins.Op0Register); op->H = &PopR; return true; }
        if (ins.Code == Code.Pop_rm64) { Operands.Mem(ins, op); op->H = &PopM; return true; }
        if (ins.Code is Code.Pop_r16 or Code.Pop_rm16 && IsReg(ins, 0)) { op->R = Gpr(ins.Op0Register); op->H = &PopR16; return true; }
        if (ins.Code == Code.Pop_rm16) { Operands.Mem(ins, op); op->H = &PopM16; return true; }
        return false;   // segment pops
    }

    public static void Register()
    {
        Binder.Add(Mnemonic.Push, BindPush);
        Binder.Add(Mnemonic.Pop, BindPop);
        Binder.Add(Mnemonic.Pushfq, (in Instruction i, Op* o) => { o->H = &Pushf; return true; });
        Binder.Add(Mnemonic.Popfq, (in Instruction i, Op* o) => { o->H = &Popf; return true; }, endsBlock: true);
        Binder.Add(Mnemonic.Pushf, (in Instruction i, Op* o) => { o->H = &Pushf16; return true; });
        Binder.Add(Mnemonic.Popf, (in Instruction i, Op* o) => { o->H = &Popf16; return true; }, endsBlock: true);
        Binder.Add(Mnemonic.Leave, (in Instruction i, Op* o) =>
        {
            if (i.Code == Code.Leaveq) o->H = &Leave;
            else if (i.Code == Code.Leavew) o->H = &Leave16;
            else return false;
            return true;
        });
        Binder.Add(Mnemonic.Enter, (in Instruction i, Op* o) =>
        {
            if (i.Code == Code.Enterq_imm16_imm8) o->H = &Enter;
            else if (i.Code == Code.Enterw_imm16_imm8) o->H = &Enter16;
            else return false;
            o->Imm = i.Immediate16;
            o->X = i.Immediate8_2nd;
            return true;
        });
    }
}
