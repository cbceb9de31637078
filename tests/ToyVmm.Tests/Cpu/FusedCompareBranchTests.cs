using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// cmp/test + jcc fused into one handler at decode time (Ops/Fused.cs): same branches, flags,
/// retired counts and fault RIPs as the two ops run one after the other.
/// </summary>
public class FusedCompareBranchTests
{
    private static readonly (ulong D, ulong X)[] Pairs =
    [
        (0, 0), (1, 2), (2, 1), (5, 5), (0x7F, 0x80), (0x80, 0x7F), (0xFF, 1), (0x7FFF, 0xFFFF),
        (0x8000_0000, 1), (0xFFFF_FFFF, 0xFFFF_FFFF), (0x8000_0000_0000_0000, 1),
        (0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000), (0x1234_5678_9ABC_DEF0, 0x1234_5678_9ABC_DEF0), (3, 0xFFFF_FFFF_FFFF_FFFD),
    ];

    private static void Jcc(Assembler a, int cc, Label l)
    {
        switch (cc)
        {
            case 0: a.jo(l); break; case 1: a.jno(l); break; case 2: a.jb(l); break; case 3: a.jae(l); break;
            case 4: a.je(l); break; case 5: a.jne(l); break; case 6: a.jbe(l); break; case 7: a.ja(l); break;
            case 8: a.js(l); break; case 9: a.jns(l); break; case 10: a.jp(l); break; case 11: a.jnp(l); break;
            case 12: a.jl(l); break; case 13: a.jge(l); break; case 14: a.jle(l); break; default: a.jg(l); break;
        }
    }

    // Forms: 0 reg,reg  1 reg,imm  2 reg,[mem] (cmp only)  3 [mem],reg  4 [mem],imm.
    private static void EmitCompare(Assembler a, bool test, int form, int size, int imm)
    {
        switch (size)
        {
            case 8:
                if (form == 0) { if (test) a.test(al, bl); else a.cmp(al, bl); }
                else if (form == 1) { if (test) a.test(al, (sbyte)imm); else a.cmp(al, (sbyte)imm); }
                else if (form == 2) a.cmp(al, __byte_ptr[rsi + 8]);
                else if (form == 3) { if (test) a.test(__byte_ptr[rsi], bl); else a.cmp(__byte_ptr[rsi], bl); }
                else { if (test) a.test(__byte_ptr[rsi], (sbyte)imm); else a.cmp(__byte_ptr[rsi], (sbyte)imm); }
                break;
            case 16:
                if (form == 0) { if (test) a.test(ax, bx); else a.cmp(ax, bx); }
                else if (form == 1) { if (test) a.test(ax, (short)imm); else a.cmp(ax, (short)imm); }
                else if (form == 2) a.cmp(ax, __word_ptr[rsi + 8]);
                else if (form == 3) { if (test) a.test(__word_ptr[rsi], bx); else a.cmp(__word_ptr[rsi], bx); }
                else { if (test) a.test(__word_ptr[rsi], (short)imm); else a.cmp(__word_ptr[rsi], (short)imm); }
                break;
            case 32:
                if (form == 0) { if (test) a.test(eax, ebx); else a.cmp(eax, ebx); }
                else if (form == 1) { if (test) a.test(eax, imm); else a.cmp(eax, imm); }
                else if (form == 2) a.cmp(eax, __dword_ptr[rsi + 8]);
                else if (form == 3) { if (test) a.test(__dword_ptr[rsi], ebx); else a.cmp(__dword_ptr[rsi], ebx); }
                else { if (test) a.test(__dword_ptr[rsi], imm); else a.cmp(__dword_ptr[rsi], imm); }
                break;
            default:
                if (form == 0) { if (test) a.test(rax, rbx); else a.cmp(rax, rbx); }
                else if (form == 1) { if (test) a.test(rax, imm); else a.cmp(rax, imm); }
                else if (form == 2) a.cmp(rax, __qword_ptr[rsi + 8]);
                else if (form == 3) { if (test) a.test(__qword_ptr[rsi], rbx); else a.cmp(__qword_ptr[rsi], rbx); }
                else { if (test) a.test(__qword_ptr[rsi], imm); else a.cmp(__qword_ptr[rsi], imm); }
                break;
        }
    }

    /// <summary>
    /// Every pair, size, form and condition: compare, branch, and fold the outcome into R8
    /// (R8 = R8 * 31 + 1 or 2, so the order counts); R9 gets each branch's flags through
    /// pushfq (the lazy flags the fused op left behind).
    /// </summary>
    private static void Matrix(Assembler a)
    {
        a.mov(rsi, CpuFixture.DataBase);
        a.xor(r8d, r8d);
        a.xor(r9d, r9d);
        foreach (var (dv, xv) in Pairs)
        {
            a.mov(rax, dv);
            a.mov(rbx, xv);
            a.mov(__qword_ptr[rsi], rax);
            a.mov(__qword_ptr[rsi + 8], rbx);
            foreach (bool test in new[] { false, true })
                foreach (int size in new[] { 8, 16, 32, 64 })
                    for (int form = 0; form < 5; form++)
                    {
                        if (test && form == 2) continue;
                        for (int cc = 0; cc < 16; cc++)
                        {
                            var taken = a.CreateLabel(); var next = a.CreateLabel();
                            EmitCompare(a, test, form, size, (int)xv);
                            Jcc(a, cc, taken);
                            a.pushfq();
                            a.pop(rcx);
                            a.imul(r8, r8, 31);
                            a.add(r8, 1);
                            a.jmp(next);
                            a.Label(ref taken);
                            a.pushfq();
                            a.pop(rcx);
                            a.imul(r8, r8, 31);
                            a.add(r8, 2);
                            a.Label(ref next);
                            a.add(r9, rcx);
                            a.rol(r9, 7);
                        }
                    }
        }
        a.hlt();
    }

    private static (ulong R8, ulong R9, long Retired) RunMatrix(bool fuse)
    {
        using var f = new CpuFixture();
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(Matrix));
        var cpu = f.NewVcpu();
        cpu.FuseCompareBranch = fuse;
        var exit = cpu.Run();
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        return (cpu.GetGpr(Gpr.R8), cpu.GetGpr(Gpr.R9), cpu.InstructionsRetired);
    }

    [Fact]
    public void Run_FusedCompareAndBranch_MatchesUnfusedForEveryConditionSizeAndForm()
    {
        var fused = RunMatrix(fuse: true);
        var plain = RunMatrix(fuse: false);
        Assert.Equal(plain.R8, fused.R8);
        Assert.Equal(plain.R9, fused.R9);
        Assert.Equal(plain.Retired, fused.Retired);
        Assert.NotEqual(0UL, fused.R8);
    }

    [Fact]
    public void Run_FusedCountingLoop_RetiresBothInstructions()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            var loop = a.CreateLabel();
            a.xor(ecx, ecx);
            a.Label(ref loop);
            a.add(ecx, 1);
            a.cmp(ecx, 1000);
            a.jne(loop);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(1000UL, cpu.GetGpr(Gpr.Rcx));
        Assert.Equal(1 + 3 * 1000 + 1, cpu.InstructionsRetired);
    }

    [Fact]
    public void Run_FusedCompareFaultingOnMemory_ReportsTheCompareRipAndCount()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            var loop = a.CreateLabel(); var end = a.CreateLabel();
            a.mov(rbx, CpuFixture.DataBase);
            a.mov(ecx, 3);
            a.Label(ref loop);
            a.cmp(__qword_ptr[rbx], 0);    // reads DataBase, then 0x7000_0000_0000 on the last round
            a.je(end);
            a.Label(ref end);
            a.dec(ecx);
            var go = a.CreateLabel();
            a.jnz(go);
            a.hlt();
            a.Label(ref go);
            a.cmp(ecx, 1);
            var keep = a.CreateLabel();
            a.jne(keep);
            a.mov(rbx, 0x7000_0000_0000);
            a.Label(ref keep);
            a.jmp(loop);
        });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#PF (vector 14)", exit.Message);
        ulong cmpRip = CpuFixture.CodeBase + (ulong)CpuFixture.Assemble(a => { a.mov(rbx, CpuFixture.DataBase); a.mov(ecx, 3); }).Length;
        Assert.Equal(cmpRip, cpu.Rip);
        // mov, mov; round 1: cmp je dec jnz cmp jne jmp (7); round 2: the same plus mov (8); then the faulting cmp.
        Assert.Equal(2 + 7 + 8, cpu.InstructionsRetired);
    }
}
