using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// Dead-flag elision (Ops/DeadFlags.cs): a register-only ALU op followed by one that overwrites
/// every flag stores only its result; registers and the flags seen afterwards must not change.
/// </summary>
public class DeadFlagsTests
{
    private static readonly ulong[] Values = [0, 1, 0x7F, 0x80, 0xFFFF, 0x8000_0000, 0xFFFF_FFFF, 0x8000_0000_0000_0000, 0x1234_5678_9ABC_DEF0, ulong.MaxValue];

    private static void Alu(Assembler a, int op, int size, bool imm)
    {
        switch (size)
        {
            case 8:
                if (imm) { switch (op) { case 0: a.add(al, 0x71); break; case 1: a.or(al, 0x71); break; case 2: a.and(al, 0x71); break; case 3: a.sub(al, 0x71); break; default: a.xor(al, 0x71); break; } }
                else { switch (op) { case 0: a.add(al, bl); break; case 1: a.or(al, bl); break; case 2: a.and(al, bl); break; case 3: a.sub(al, bl); break; default: a.xor(al, bl); break; } }
                break;
            case 16:
                if (imm) { switch (op) { case 0: a.add(ax, 0x7123); break; case 1: a.or(ax, 0x7123); break; case 2: a.and(ax, 0x7123); break; case 3: a.sub(ax, 0x7123); break; default: a.xor(ax, 0x7123); break; } }
                else { switch (op) { case 0: a.add(ax, bx); break; case 1: a.or(ax, bx); break; case 2: a.and(ax, bx); break; case 3: a.sub(ax, bx); break; default: a.xor(ax, bx); break; } }
                break;
            case 32:
                if (imm) { switch (op) { case 0: a.add(eax, -0x12345); break; case 1: a.or(eax, -0x12345); break; case 2: a.and(eax, -0x12345); break; case 3: a.sub(eax, -0x12345); break; default: a.xor(eax, -0x12345); break; } }
                else { switch (op) { case 0: a.add(eax, ebx); break; case 1: a.or(eax, ebx); break; case 2: a.and(eax, ebx); break; case 3: a.sub(eax, ebx); break; default: a.xor(eax, ebx); break; } }
                break;
            default:
                if (imm) { switch (op) { case 0: a.add(rax, -0x12345); break; case 1: a.or(rax, -0x12345); break; case 2: a.and(rax, -0x12345); break; case 3: a.sub(rax, -0x12345); break; default: a.xor(rax, -0x12345); break; } }
                else { switch (op) { case 0: a.add(rax, rbx); break; case 1: a.or(rax, rbx); break; case 2: a.and(rax, rbx); break; case 3: a.sub(rax, rbx); break; default: a.xor(rax, rbx); break; } }
                break;
        }
    }

    // Each case: an ALU op, then a flag-overwriting one (so the first one's flags are dead),
    // then pushfq; R8 folds the results in order and R9 the flags.
    private static void Matrix(Assembler a)
    {
        a.mov(r8d, 1);
        a.xor(r9d, r9d);
        foreach (ulong dv in Values)
            foreach (ulong xv in Values)
                for (int op = 0; op < 5; op++)
                    foreach (int size in new[] { 8, 16, 32, 64 })
                        foreach (bool imm in new[] { false, true })
                        {
                            a.mov(rax, dv);
                            a.mov(rbx, xv);
                            Alu(a, op, size, imm);
                            if (op % 2 == 0) a.cmp(rax, rbx); else a.add(rcx, rax);
                            a.pushfq();
                            a.pop(rdx);
                            a.imul(r8, r8, 31);
                            a.add(r8, rax);
                            a.add(r9, rdx);
                            a.rol(r9, 5);
                        }
        a.hlt();
    }

    private static (ulong R8, ulong R9, ulong Rcx, long Retired) RunMatrix(bool drop)
    {
        using var f = new CpuFixture();
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(Matrix));
        var cpu = f.NewVcpu();
        cpu.DropDeadFlags = drop;
        var exit = cpu.Run();
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        return (cpu.GetGpr(Gpr.R8), cpu.GetGpr(Gpr.R9), cpu.GetGpr(Gpr.Rcx), cpu.InstructionsRetired);
    }

    [Fact]
    public void Run_AluOpsWithDeadFlags_SameRegistersAndFlagsAsWithFlags()
    {
        var dropped = RunMatrix(drop: true);
        var kept = RunMatrix(drop: false);
        Assert.Equal(kept, dropped);
    }

    [Fact]
    public void Run_AluOpBeforeFlagReader_KeepsItsFlags()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(eax, 0xFFFF_FFFF);
            a.mov(ebx, 1);
            a.xor(ecx, ecx);          // CF = 0 before
            a.add(eax, ebx);          // CF = 1; the next instruction reads it, so it is not dead
            a.adc(ecx, 0);
            a.add(eax, ebx);          // eax 0 -> 1, CF = 0; dead: the sub below overwrites it
            a.sub(ebx, 2);            // 1 - 2: CF = 1
            a.adc(ecx, 0);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(2UL, cpu.GetGpr(Gpr.Rcx));
        Assert.Equal(1UL, cpu.GetGpr(Gpr.Rax));
    }
}
