using System.Runtime.CompilerServices;
using Iced.Intel;
using static ToyVmm.Cpu.Operands;

namespace ToyVmm.Cpu.Ops;

/// <summary>
/// System and VM-facing instructions: hlt, in/out, vmcall, cpuid, rdtsc(p), cli/sti,
/// descriptor tables, control registers, MSRs, swapgs, invlpg, segment loads,
/// int n / int3, iretq, syscall / sysret. Privileged ones raise #GP(0) at CPL 3.
/// Anything that changes translation or privilege ends its block.
/// </summary>
internal static unsafe partial class SystemOps
{
    private static void RequireCpl0(CpuState* s) { if (s->Cpl != 0) throw GuestFault.Gp(); }
    private static void RequireIopl(CpuState* s) { if (s->Cpl > (int)((s->Flags >> 12) & 3)) throw GuestFault.Gp(); }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Mfence(CpuState* s, Op* op) { Interlocked.MemoryBarrier(); return Exec.Next(s, op); }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Hlt(CpuState* s, Op* op)
    {
        RequireCpl0(s);
        // No interrupt source exists, so hlt stops the vCPU whatever IF says.
        s->ExitReason = ExitReasons.Halted;
        return Exec.Next(s, op);
    }

    // out: X = size, Y = 1 when the port is DX, Imm = port otherwise.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Out(CpuState* s, Op* op)
    {
        RequireIopl(s);
        ushort port = op->Y == 1 ? (ushort)s->Regs[2] : (ushort)op->Imm;
        uint v = op->X switch { 1 => (byte)s->Regs[0], 2 => (ushort)s->Regs[0], _ => (uint)s->Regs[0] };
        Vcpu.Of(s).PortOut(port, op->X, v);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* In(CpuState* s, Op* op)
    {
        RequireIopl(s);
        ushort port = op->Y == 1 ? (ushort)s->Regs[2] : (ushort)op->Imm;
        uint v = Vcpu.Of(s).PortIn(port, op->X);
        if (op->X == 1) ((byte*)s->Regs)[0] = (byte)v;
        else if (op->X == 2) *(ushort*)&s->Regs[0] = (ushort)v;
        else s->Regs[0] = v;
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Vmcall(CpuState* s, Op* op)
    {
        if (s->Cpl != 0) { s->Regs[0] = unchecked((ulong)-1L); return Exec.Next(s, op); }   // -KVM_EPERM
        Vcpu.Of(s).Hypercall();
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Cpuid(CpuState* s, Op* op)
    {
        CpuidTable.Query(s, (uint)s->Regs[0], (uint)s->Regs[1], out uint a, out uint b, out uint c, out uint d);
        s->Regs[0] = a; s->Regs[3] = b; s->Regs[1] = c; s->Regs[2] = d;
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Rdtsc(CpuState* s, Op* op)
    {
        ulong t = Vcpu.Of(s).Tsc();
        s->Regs[0] = (uint)t;
        s->Regs[2] = t >> 32;
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Rdtscp(CpuState* s, Op* op)
    {
        ulong t = Vcpu.Of(s).Tsc();
        s->Regs[0] = (uint)t;
        s->Regs[2] = t >> 32;
        s->Regs[1] = (uint)s->TscAux;
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Rdpid(CpuState* s, Op* op) { s->Regs[op->R] = (uint)s->TscAux; return Exec.Next(s, op); }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Cli(CpuState* s, Op* op) { RequireIopl(s); s->Flags &= ~Flags.IF; return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Sti(CpuState* s, Op* op) { RequireIopl(s); s->Flags |= Flags.IF; return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Cld(CpuState* s, Op* op) { s->Flags &= ~Flags.DF; return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Std(CpuState* s, Op* op) { s->Flags |= Flags.DF; return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Clc(CpuState* s, Op* op) { Flags.Merge(s, 0, Flags.CF); return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Stc(CpuState* s, Op* op) { Flags.Merge(s, Flags.CF, Flags.CF); return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Cmc(CpuState* s, Op* op) { Flags.Merge(s, Flags.Carry(s) ? 0 : Flags.CF, Flags.CF); return Exec.Next(s, op); }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Clts(CpuState* s, Op* op) { RequireCpl0(s); Vcpu.Of(s).WriteCr(0, s->Cr0 & ~Vcpu.Cr0Ts); return Exec.Next(s, op); }

    // lgdt / lidt (X = 0 gdt, 1 idt) and sgdt / sidt.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Lgdt(CpuState* s, Op* op)
    {
        RequireCpl0(s);
        ulong ea = Mem.Ea(s, op);
        ushort limit = (ushort)Mem.Read<S16>(s, ea);
        ulong b = Mem.Read<S64>(s, ea + 2);
        if (op->X == 0) { s->GdtBase = b; s->GdtLimit = limit; } else { s->IdtBase = b; s->IdtLimit = limit; }
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Sgdt(CpuState* s, Op* op)
    {
        ulong ea = Mem.Ea(s, op);
        Vcpu.Of(s).ProbeWrite(ea, 10);
        Mem.Write<S16>(s, ea, op->X == 0 ? s->GdtLimit : s->IdtLimit);
        Mem.Write<S64>(s, ea + 2, op->X == 0 ? s->GdtBase : s->IdtBase);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Ltr(CpuState* s, Op* op)
    {
        RequireCpl0(s);
        ushort sel = (ushort)(op->Y == 0 ? s->Regs[op->R2] : Mem.Read<S16>(s, Mem.Ea(s, op)));
        Vcpu.Of(s).LoadTaskRegister(sel);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Lldt(CpuState* s, Op* op)
    {
        RequireCpl0(s);
        ushort sel = (ushort)(op->Y == 0 ? s->Regs[op->R2] : Mem.Read<S16>(s, Mem.Ea(s, op)));
        if ((sel & ~3) != 0) throw GuestFault.Gp((uint)(sel & ~3));   // only a null LDT is supported
        s->LdtSel = 0;
        return Exec.Next(s, op);
    }

    // smsw: CR0 into r16 (merged), r32 (bits 31:0, zero-extended), r64 (all of it) or m16 (bits 15:0).
    // X = register size in bytes, Y = 1 for memory. Not privileged: there is no UMIP (CPUID reports none).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Smsw(CpuState* s, Op* op)
    {
        ulong cr0 = s->Cr0;
        if (op->Y == 1) Mem.Write<S16>(s, Mem.Ea(s, op), cr0);
        else if (op->X == 2) Reg.Set<S16>(s, op->R2, cr0);
        else if (op->X == 4) Reg.Set<S32>(s, op->R2, cr0);
        else s->Regs[op->R2] = cr0;
        return Exec.Next(s, op);
    }

    // fwait: #NM when CR0.MP and CR0.TS are both set; #MF (CR0.NE) when an unmasked x87 exception
    // is pending in the status word (one can only come from fxrstor: there is no x87 arithmetic).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Fwait(CpuState* s, Op* op)
    {
        if ((s->Cr0 & (Vcpu.Cr0Mp | Vcpu.Cr0Ts)) == (Vcpu.Cr0Mp | Vcpu.Cr0Ts)) throw new GuestFault(Vec.NM);
        if ((s->Fsw & 0x80) != 0 && (s->Fsw & ~s->Fcw & 0x3F) != 0 && (s->Cr0 & Vcpu.Cr0Ne) != 0) throw new GuestFault(Vec.MF);
        return Exec.Next(s, op);
    }

    // str / sldt: X = 0 str, 1 sldt.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Str(CpuState* s, Op* op)
    {
        ushort v = op->X == 0 ? s->TrSel : s->LdtSel;
        if (op->Y == 0) s->Regs[op->R2] = v; else Mem.Write<S16>(s, Mem.Ea(s, op), v);
        return Exec.Next(s, op);
    }

    // mov crN, r64 (X = N) / mov r64, crN (Y = 1).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* MovToCr(CpuState* s, Op* op)
    {
        RequireCpl0(s);
        Vcpu.Of(s).WriteCr(op->X, s->Regs[op->R2]);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* MovFromCr(CpuState* s, Op* op)
    {
        RequireCpl0(s);
        s->Regs[op->R2] = op->X switch { 0 => s->Cr0, 2 => s->Cr2, 3 => s->Cr3, 4 => s->Cr4, _ => s->Cr8 };
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Rdmsr(CpuState* s, Op* op)
    {
        RequireCpl0(s);
        ulong? v = Vcpu.Of(s).ReadMsr((uint)s->Regs[1]);
        if (v == null) throw GuestFault.Gp();
        s->Regs[0] = (uint)v.Value;
        s->Regs[2] = v.Value >> 32;
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Wrmsr(CpuState* s, Op* op)
    {
        RequireCpl0(s);
        if (!Vcpu.Of(s).WriteMsr((uint)s->Regs[1], (uint)s->Regs[0] | (s->Regs[2] << 32))) throw GuestFault.Gp();
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Swapgs(CpuState* s, Op* op)
    {
        RequireCpl0(s);
        (s->SegBase[2], s->KernelGsBase) = (s->KernelGsBase, s->SegBase[2]);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Invlpg(CpuState* s, Op* op)
    {
        RequireCpl0(s);
        Vcpu.Of(s).FlushPage(Mem.Ea(s, op));
        return Exec.Next(s, op);
    }

    // mov sreg, r/m16: X = segment register index (SegmentRegister order).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* MovToSeg(CpuState* s, Op* op)
    {
        ushort sel = (ushort)(op->Y == 0 ? s->Regs[op->R2] : Mem.Read<S16>(s, Mem.Ea(s, op)));
        Vcpu.Of(s).LoadSegment((SegmentRegister)op->X, sel);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* MovFromSeg(CpuState* s, Op* op)
    {
        ushort v = s->Sel[op->X];
        if (op->Y == 0) { if (op->R == 2) *(ushort*)&s->Regs[op->R2] = v; else s->Regs[op->R2] = v; }
        else Mem.Write<S16>(s, Mem.Ea(s, op), v);
        return Exec.Next(s, op);
    }

    // int n / int3: delivered as software interrupts (return RIP after the instruction).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Int(CpuState* s, Op* op) => throw new GuestFault(op->X) { Software = true };
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Int1(CpuState* s, Op* op) => throw new GuestFault(Vec.DB) { Software = true };

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Retf(CpuState* s, Op* op) { Vcpu.Of(s).FarReturn((ushort)op->Imm, op->X); return null; }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Iretq(CpuState* s, Op* op) { Vcpu.Of(s).Iret(); return null; }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Syscall(CpuState* s, Op* op) { Vcpu.Of(s).Syscall(Ops.Control.NextRip(s, op)); return null; }
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Sysret(CpuState* s, Op* op) { Vcpu.Of(s).Sysret(); return null; }
}
