using Iced.Intel;
using static ToyVmm.Cpu.Operands;

namespace ToyVmm.Cpu.Ops;

/// <summary>push, pop, pushfq, popfq, enter, leave (64-bit stack; RSP changes only after the memory access succeeds).</summary>
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

    public static Op* PushR(CpuState* s, Op* op) { Push(s, s->Regs[op->R]); return Exec.Next(s, op); }
    public static Op* PushI(CpuState* s, Op* op) { Push(s, (ulong)(long)op->Imm); return Exec.Next(s, op); }
    public static Op* PushM(CpuState* s, Op* op) { Push(s, Mem.Read<S64>(s, Mem.Ea(s, op))); return Exec.Next(s, op); }
    public static Op* PopR(CpuState* s, Op* op) { ulong v = Pop(s); s->Regs[op->R] = v; return Exec.Next(s, op); }

    // pop m64: the address is computed with RSP already incremented.
    public static Op* PopM(CpuState* s, Op* op)
    {
        ulong old = s->Regs[4];
        ulong v = Mem.Read<S64>(s, old);
        s->Regs[4] = old + 8;
        try { Mem.Write<S64>(s, Mem.Ea(s, op), v); }
        catch { s->Regs[4] = old; throw; }
        return Exec.Next(s, op);
    }

    public static Op* Pushf(CpuState* s, Op* op) { Push(s, Flags.Read(s) & ~(Flags.RF | 0x20000UL)); return Exec.Next(s, op); }

    // popfq: at CPL 3, IOPL and IF stay (IOPL = 0 is assumed for user mode).
    public static Op* Popf(CpuState* s, Op* op)
    {
        ulong v = Mem.Read<S64>(s, s->Regs[4]);
        s->Regs[4] += 8;
        ulong keep = s->Cpl == 0 ? 0 : Flags.IOPL | Flags.IF;
        ulong cur = Flags.Read(s);
        Flags.Write(s, (v & ~keep & ~Flags.RF) | (cur & keep));
        return Exec.Next(s, op);
    }

    public static Op* Leave(CpuState* s, Op* op)
    {
        ulong rbp = s->Regs[5];
        ulong v = Mem.Read<S64>(s, rbp);
        s->Regs[4] = rbp + 8;
        s->Regs[5] = v;
        return Exec.Next(s, op);
    }

    // enter imm16, imm8 (nesting level 0 and 1..31 as the manual describes).
    public static Op* Enter(CpuState* s, Op* op)
    {
        ulong rsp = s->Regs[4], rbp = s->Regs[5];
        int level = op->X & 31;
        ulong frame = rsp - 8;
        Mem.Write<S64>(s, frame, rbp);
        ulong cur = frame;
        for (int i = 1; i < level; i++)
        {
            rbp -= 8;
            cur -= 8;
            Mem.Write<S64>(s, cur, Mem.Read<S64>(s, rbp));
        }
        if (level > 0) { cur -= 8; Mem.Write<S64>(s, cur, frame); }
        s->Regs[5] = frame;
        s->Regs[4] = cur - (ushort)op->Imm;
        return Exec.Next(s, op);
    }

    private static bool BindPush(in Instruction ins, Op* op)
    {
        if (ins.Code is Code.Push_r64 or Code.Push_rm64 && IsReg(ins, 0)) { op->R = Gpr(ins.Op0Register); op->H = &PushR; return true; }
        if (ins.Code == Code.Push_rm64) { Operands.Mem(ins, op); op->H = &PushM; return true; }
        if (ins.Code is Code.Pushq_imm32 or Code.Pushq_imm8) { op->Imm = (int)Imm(ins, 0); op->H = &PushI; return true; }
        return false;   // 16-bit pushes and segment pushes
    }

    private static bool BindPop(in Instruction ins, Op* op)
    {
        if (ins.Code is Code.Pop_r64 or Code.Pop_rm64 && IsReg(ins, 0)) { op->R = Gpr(ins.Op0Register); op->H = &PopR; return true; }
        if (ins.Code == Code.Pop_rm64) { Operands.Mem(ins, op); op->H = &PopM; return true; }
        return false;
    }

    public static void Register()
    {
        Binder.Add(Mnemonic.Push, BindPush);
        Binder.Add(Mnemonic.Pop, BindPop);
        Binder.Add(Mnemonic.Pushfq, (in Instruction i, Op* o) => { o->H = &Pushf; return true; });
        Binder.Add(Mnemonic.Popfq, (in Instruction i, Op* o) => { o->H = &Popf; return true; }, endsBlock: true);
        Binder.Add(Mnemonic.Leave, (in Instruction i, Op* o) => { if (i.Code != Code.Leaveq) return false; o->H = &Leave; return true; });
        Binder.Add(Mnemonic.Enter, (in Instruction i, Op* o) =>
        {
            if (i.Code != Code.Enterq_imm16_imm8) return false;
            o->Imm = i.Immediate16;
            o->X = i.Immediate8_2nd;
            o->H = &Enter;
            return true;
        });
    }
}
