using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu.Tier;

/// <summary>
/// div and idiv compiled inline (Tier/BlockCompiler.Div.cs): a loop of every compiled form, and
/// the cases left to the interpreter (a double-width dividend, #DE), run interpreted and
/// compiled (threshold 0); both end in the same state.
/// </summary>
public sealed class DivTierTests
{
    private const ulong Data = CpuFixture.DataBase;
    private const ulong Idt = 0x300000, Handler = 0x140000;

    private static string State(CpuFixture f, Vcpu v)
    {
        var regs = string.Join(" ", Enumerable.Range(0, 16).Select(i => v.GetGpr((Gpr)i).ToString("x")));
        return $"{regs} rip={v.Rip:x} rflags={v.Rflags & 0x8D5:x} retired={v.InstructionsRetired} mem={Convert.ToHexString(f.Read(Data + 0x100, 0x400))}";
    }

    // Sums quotients and remainders of div/idiv r/m32 and r/m64 over 60 rounds with operands
    // of both signs; round 50 divides with RDX = 1 (a 128-bit dividend, interpreted), and after
    // the loop a divide by zero raises #DE, whose handler records the RIP and halts.
    private static void Program(Iced.Intel.Assembler a)
    {
        var loop = a.CreateLabel();
        var plain = a.CreateLabel();
        a.mov(r8, 1000003);
        a.xor(ecx, ecx);
        a.xor(r10, r10);
        a.mov(rdi, Data + 0x100);
        a.Label(ref loop);
        a.lea(rbx, __qword_ptr[rcx * 8 + 3]);
        a.mov(__qword_ptr[Data + 0x80], rbx);
        a.mov(rax, r8);
        a.imul(rax, rcx);
        a.xor(edx, edx);
        a.cmp(ecx, 50);
        a.jne(plain);
        a.mov(edx, 1);                         // 128-bit dividend: the interpreter's
        a.Label(ref plain);
        a.div(rbx);
        a.add(r10, rax);
        a.add(r10, rdx);
        a.mov(eax, ecx);
        a.imul(eax, eax, -77777);
        a.cdq();
        a.idiv(ebx);
        a.add(r10, rax);
        a.add(r10, rdx);
        a.mov(rax, r8);
        a.neg(rax);
        a.imul(rax, rcx);
        a.cqo();
        a.idiv(__qword_ptr[Data + 0x80]);
        a.add(r10, rax);
        a.add(r10, rdx);
        a.mov(eax, ecx);
        a.shl(eax, 20);
        a.xor(edx, edx);
        a.div(__dword_ptr[Data + 0x80]);
        a.mov(__qword_ptr[rdi], rax);
        a.mov(__qword_ptr[rdi + 8], r10);
        a.add(rdi, 16);
        a.add(ecx, 1);
        a.cmp(ecx, 60);
        a.jne(loop);
        a.xor(ebx, ebx);
        a.idiv(rbx);                           // #DE
        a.hlt();
    }

    [Fact]
    public void Run_DivLoop_CompiledEndsInTheInterpretersStateAndDeIsDeliveredAtTheInstruction()
    {
        string[] states = new string[2];
        for (int t = 0; t < 2; t++)
        {
            using var f = new CpuFixture();
            CodeCache.For(f.Memory).TierThreshold = t - 1;
            f.Write(Handler, CpuFixture.Assemble(a => { a.mov(r12, __qword_ptr[rsp]); a.hlt(); }, Handler));
            ExceptionTests.Gate(f, Idt, 0, Handler);
            var (exit, cpu) = f.Run(Program, setup: v => v.SetIdtr(Idt, 0xFFF));
            Assert.Equal(VcpuExitKind.Halted, exit.Kind);
            Assert.Equal(60UL, cpu.GetGpr(Gpr.Rcx));
            int de = CpuFixture.Assemble(Program).Length - CpuFixture.Assemble(a => { a.idiv(rbx); a.hlt(); }).Length;
            Assert.Equal(CpuFixture.CodeBase + (ulong)de, cpu.GetGpr(Gpr.R12));
            states[t] = State(f, cpu);
            if (t == 1) Assert.True(cpu.TierStats.OpsCompiled >= 30, $"compiled {cpu.TierStats.OpsCompiled} ops");
        }
        Assert.Equal(states[0], states[1]);
    }
}
