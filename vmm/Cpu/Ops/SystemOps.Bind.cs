using Iced.Intel;
using IReg = Iced.Intel.Register;
using static ToyVmm.Cpu.Operands;

namespace ToyVmm.Cpu.Ops;

internal static unsafe partial class SystemOps
{
    private static BindFn Simple(delegate*<CpuState*, Op*, Op*> h) => (in Instruction ins, Op* op) => { op->H = h; return true; };

    private static byte SegIndex(IReg r) => r switch
    {
        IReg.ES => 0, IReg.CS => 1, IReg.SS => 2, IReg.DS => 3, IReg.FS => 4, IReg.GS => 5, _ => 0xFF,
    };

    /// <summary>mov to/from control and segment registers (the Mnemonic.Mov forms that are not general-purpose).</summary>
    public static bool BindMovSpecial(in Instruction ins, Op* op)
    {
        if (IsReg(ins, 0) && ins.Op0Register.IsCR())
        {
            int n = ins.Op0Register - IReg.CR0;
            if (n is not (0 or 2 or 3 or 4 or 8)) return false;
            op->X = (byte)n; op->R2 = Gpr(ins.Op1Register); op->H = &MovToCr;
            return true;
        }
        if (IsReg(ins, 1) && ins.Op1Register.IsCR())
        {
            int n = ins.Op1Register - IReg.CR0;
            if (n is not (0 or 2 or 3 or 4 or 8)) return false;
            op->X = (byte)n; op->R2 = Gpr(ins.Op0Register); op->H = &MovFromCr;
            return true;
        }
        if (IsReg(ins, 0) && ins.Op0Register.IsSegmentRegister())
        {
            byte seg = SegIndex(ins.Op0Register);
            if (seg is 1 or 0xFF) return false;   // mov cs, x is #UD
            op->X = seg;
            if (IsReg(ins, 1)) op->R2 = Gpr(ins.Op1Register); else { Operands.Mem(ins, op); op->Y = 1; }
            op->H = &MovToSeg;
            return true;
        }
        if (IsReg(ins, 1) && ins.Op1Register.IsSegmentRegister())
        {
            byte seg = SegIndex(ins.Op1Register);
            if (seg == 0xFF) return false;
            op->X = seg;
            if (IsReg(ins, 0)) { op->R2 = Gpr(ins.Op0Register); op->R = (byte)ins.Op0Register.GetSize(); }
            else { Operands.Mem(ins, op); op->Y = 1; }
            op->H = &MovFromSeg;
            return true;
        }
        return false;
    }

    private static bool BindIo(in Instruction ins, Op* op, bool output)
    {
        int portOp = output ? 0 : 1, valOp = output ? 1 : 0;
        op->X = (byte)ins.GetOpRegister(valOp).GetSize();
        if (IsReg(ins, portOp)) op->Y = 1; else op->Imm = (int)(ins.GetImmediate(portOp) & 0xFF);
        op->H = output ? &Out : &In;
        return true;
    }

    private static bool BindSelectorOp(in Instruction ins, Op* op, delegate*<CpuState*, Op*, Op*> h)
    {
        if (IsReg(ins, 0)) op->R2 = (byte)ins.Op0Register.GetNumber(); else { Operands.Mem(ins, op); op->Y = 1; }
        op->H = h;
        return true;
    }

    private static bool BindMem(in Instruction ins, Op* op, delegate*<CpuState*, Op*, Op*> h, byte x = 0)
    {
        if (!IsMem(ins, 0)) return false;
        Operands.Mem(ins, op);
        op->X = x;
        op->H = h;
        return true;
    }

    public static void Register()
    {
        Binder.Add(Mnemonic.Hlt, Simple(&Hlt), endsBlock: true);
        Binder.Add(Mnemonic.Out, (in Instruction i, Op* o) => BindIo(i, o, true), endsBlock: true);
        Binder.Add(Mnemonic.In, (in Instruction i, Op* o) => BindIo(i, o, false), endsBlock: true);
        Binder.Add(Mnemonic.Vmcall, Simple(&Vmcall), endsBlock: true);
        Binder.Add(Mnemonic.Cpuid, Simple(&Cpuid));
        Binder.Add(Mnemonic.Rdtsc, Simple(&Rdtsc));
        Binder.Add(Mnemonic.Rdtscp, Simple(&Rdtscp));
        Binder.Add(Mnemonic.Rdpid, (in Instruction i, Op* o) => { o->R = (byte)i.Op0Register.GetNumber(); o->H = &Rdpid; return true; });
        Binder.Add(Mnemonic.Cli, Simple(&Cli));
        Binder.Add(Mnemonic.Sti, Simple(&Sti));
        Binder.Add(Mnemonic.Cld, Simple(&Cld));
        Binder.Add(Mnemonic.Std, Simple(&Std));
        Binder.Add(Mnemonic.Clc, Simple(&Clc));
        Binder.Add(Mnemonic.Stc, Simple(&Stc));
        Binder.Add(Mnemonic.Cmc, Simple(&Cmc));
        Binder.Add(Mnemonic.Clts, Simple(&Clts), endsBlock: true);
        Binder.Add(Mnemonic.Lgdt, (in Instruction i, Op* o) => BindMem(i, o, &Lgdt, 0), endsBlock: true);
        Binder.Add(Mnemonic.Lidt, (in Instruction i, Op* o) => BindMem(i, o, &Lgdt, 1), endsBlock: true);
        Binder.Add(Mnemonic.Sgdt, (in Instruction i, Op* o) => BindMem(i, o, &Sgdt, 0));
        Binder.Add(Mnemonic.Sidt, (in Instruction i, Op* o) => BindMem(i, o, &Sgdt, 1));
        Binder.Add(Mnemonic.Ltr, (in Instruction i, Op* o) => BindSelectorOp(i, o, &Ltr), endsBlock: true);
        Binder.Add(Mnemonic.Lldt, (in Instruction i, Op* o) => BindSelectorOp(i, o, &Lldt), endsBlock: true);
        Binder.Add(Mnemonic.Str, (in Instruction i, Op* o) => { o->X = 0; return BindSelectorOp(i, o, &Str); });
        Binder.Add(Mnemonic.Sldt, (in Instruction i, Op* o) => { o->X = 1; return BindSelectorOp(i, o, &Str); });
        Binder.Add(Mnemonic.Smsw, (in Instruction i, Op* o) =>
        {
            if (IsReg(i, 0)) { o->R2 = (byte)i.Op0Register.GetNumber(); o->X = (byte)i.Op0Register.GetSize(); }
            else { Operands.Mem(i, o); o->Y = 1; }
            o->H = &Smsw;
            return true;
        });
        Binder.Add(Mnemonic.Wait, Simple(&Fwait));
        Binder.Add(Mnemonic.Rdmsr, Simple(&Rdmsr));
        Binder.Add(Mnemonic.Wrmsr, Simple(&Wrmsr), endsBlock: true);
        Binder.Add(Mnemonic.Swapgs, Simple(&Swapgs), endsBlock: true);
        Binder.Add(Mnemonic.Invlpg, (in Instruction i, Op* o) => BindMem(i, o, &Invlpg), endsBlock: true);
        Binder.Add(Mnemonic.Int, (in Instruction i, Op* o) => { o->X = i.Immediate8; o->H = &Int; return true; }, endsBlock: true);
        Binder.Add(Mnemonic.Int3, (in Instruction i, Op* o) => { o->X = Vec.BP; o->H = &Int; return true; }, endsBlock: true);
        Binder.Add(Mnemonic.Int1, Simple(&Int1), endsBlock: true);
        Binder.Add(Mnemonic.Iretq, Simple(&Iretq), endsBlock: true);
        Binder.Add(Mnemonic.Retf, (in Instruction i, Op* o) =>
        {
            o->X = i.Code switch { Code.Retfq or Code.Retfq_imm16 => 8, Code.Retfd or Code.Retfd_imm16 => 4, Code.Retfw or Code.Retfw_imm16 => 2, _ => 0 };
            if (o->X == 0) return false;
            o->Imm = i.OpCount > 0 ? i.Immediate16 : 0;
            o->H = &Retf;
            return true;
        }, endsBlock: true);
        Binder.Add(Mnemonic.Syscall, Simple(&Syscall), endsBlock: true);
        Binder.Add(Mnemonic.Sysretq, Simple(&Sysret), endsBlock: true);
    }
}
