using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu.Tier;

/// <summary>
/// The SSE/SSE2 forms the translation tier compiles inline (Tier/BlockCompiler.Sse.cs): each
/// program runs on the interpreter and compiled (threshold 0: every block compiled at its first
/// execution); both end in the same registers, XMM registers, memory and retired count.
/// </summary>
public sealed class SseTierTests
{
    private const ulong Data = CpuFixture.DataBase;
    private const ulong Idt = 0x300000, Handler = 0x140000;

    private static string State(CpuFixture f, Vcpu v)
    {
        var regs = string.Join(" ", Enumerable.Range(0, 16).Select(i => v.GetGpr((Gpr)i).ToString("x")));
        var xmm = string.Join(" ", Enumerable.Range(0, 16).Select(i => v.GetXmm(i).ToString("x")));
        return $"{regs} | {xmm} | rip={v.Rip:x} rflags={v.Rflags & 0x8D5:x} retired={v.InstructionsRetired} mem={Convert.ToHexString(f.Read(Data + 0x800, 0x500))}";
    }

    private static void Fill(CpuFixture f)
    {
        for (ulong i = 0; i < 0x100; i++) f.W64(Data + i * 8, 0x0123_4567_89AB_CDEF * (i + 1) ^ (i << 17));
    }

    // The loop of a vectorised gcc matrix kernel (cpusuite-sse's kernel_matrix), and around it
    // every other compiled form: register and memory sources of each width, stores of each width,
    // GPR <-> XMM moves.
    private static void Kernel(Iced.Intel.Assembler a)
    {
        var loop = a.CreateLabel();
        a.mov(rax, Data);
        a.mov(rdx, Data + 0x400);
        a.mov(rsi, Data + 0x800);
        a.mov(ecx, 40);
        a.pxor(xmm3, xmm3);
        a.Label(ref loop);
        a.movd(xmm4, __dword_ptr[rdx]);
        a.movdqa(xmm2, __xmmword_ptr[rax]);
        a.add(rax, 0x10);
        a.add(rdx, 4);
        a.pshufd(xmm0, xmm4, 0);
        a.psrlq(xmm2, 0x20);
        a.movdqa(xmm1, xmm0);
        a.psrlq(xmm0, 0x20);
        a.pmuludq(xmm1, __xmmword_ptr[rax - 0x10]);
        a.pshufd(xmm1, xmm1, 8);
        a.pmuludq(xmm0, xmm2);
        a.pshufd(xmm0, xmm0, 8);
        a.punpckldq(xmm1, xmm0);
        a.paddd(xmm3, xmm1);
        a.movdqu(xmm5, __xmmword_ptr[rax + 3]);          // unaligned load
        a.pcmpeqd(xmm5, xmm3);
        a.por(xmm5, xmm4);
        a.movq(xmm6, __qword_ptr[rax + 8]);              // m64 load, zero-extended
        a.paddq(xmm6, xmm5);
        a.movq(r8, xmm6);                                // xmm -> gpr
        a.movd(r9d, xmm3);
        a.add(r8, r9);
        a.movq(xmm7, r8);                                // gpr -> xmm
        a.movd(xmm8, r9d);
        a.punpcklqdq(xmm7, xmm8);
        a.movaps(__xmmword_ptr[rsi], xmm3);              // aligned store
        a.movdqu(__xmmword_ptr[rsi + 0x101], xmm7);      // unaligned store
        a.movq(__qword_ptr[rsi + 0x40], xmm6);           // m64 store
        a.movd(__dword_ptr[rsi + 0x48], xmm5);           // m32 store
        a.add(rsi, 0x10);
        a.sub(ecx, 1);
        a.jne(loop);
        a.hlt();
    }

    [Fact]
    public void Run_SseKernelLoop_CompiledEndsInTheInterpretersStateWithEveryOpCompiled()
    {
        string[] states = new string[2];
        for (int t = 0; t < 2; t++)
        {
            using var f = new CpuFixture();
            CodeCache.For(f.Memory).TierThreshold = t - 1;
            Fill(f);
            var (exit, cpu) = f.Run(Kernel);
            Assert.True(exit.Kind == VcpuExitKind.Halted, $"tier {t - 1}: {exit.Kind} {exit}");
            states[t] = State(f, cpu);
            // Every op of the loop block (37 instructions) compiles: no hand-over inside it.
            if (t == 1) Assert.True(cpu.TierStats.OpsCompiled >= 37, $"compiled {cpu.TierStats.OpsCompiled} ops");
        }
        Assert.Equal(states[0], states[1]);
    }

    // #GP (vector 13) and #NM (vector 7) handlers: r12 = the RIP the frame names, r13 = the vector; halt.
    private static void Handlers(CpuFixture f)
    {
        f.Write(Handler, CpuFixture.Assemble(a => { a.pop(r13); a.mov(r12, __qword_ptr[rsp]); a.mov(r13d, 13); a.hlt(); }, Handler));
        f.Write(Handler + 0x100, CpuFixture.Assemble(a => { a.mov(r12, __qword_ptr[rsp]); a.mov(r13d, 7); a.hlt(); }, Handler + 0x100));
        ExceptionTests.Gate(f, Idt, 13, Handler);
        ExceptionTests.Gate(f, Idt, 7, Handler + 0x100);
    }

    private static void FaultLoop(Iced.Intel.Assembler a)
    {
        var loop = a.CreateLabel();
        a.mov(rax, Data);
        a.xor(ecx, ecx);
        a.Label(ref loop);
        a.paddd(xmm1, xmm1);
        a.add(rcx, 1);
        a.movdqa(xmm0, __xmmword_ptr[rax]);   // misaligned once rax = Data + 8 * 5
        a.lea(rax, __qword_ptr[rax + rcx * 8]);
        a.paddd(xmm1, xmm0);
        a.cmp(ecx, 100);
        a.jne(loop);
        a.hlt();
    }

    [Fact]
    public void Run_MisalignedMovdqaInACompiledLoop_GpAtTheInstructionOnBothTiers()
    {
        string[] states = new string[2];
        for (int t = 0; t < 2; t++)
        {
            using var f = new CpuFixture();
            CodeCache.For(f.Memory).TierThreshold = t - 1;
            Fill(f);
            Handlers(f);
            var (exit, cpu) = f.Run(FaultLoop, setup: v => { v.SetIdtr(Idt, 0xFFF); v.SetXmm(1, 3); });
            Assert.Equal(VcpuExitKind.Halted, exit.Kind);
            Assert.Equal(13UL, cpu.GetGpr(Gpr.R13));
            int before = CpuFixture.Assemble(a => { a.mov(rax, Data); a.xor(ecx, ecx); a.paddd(xmm1, xmm1); a.add(rcx, 1); }).Length;
            Assert.Equal(CpuFixture.CodeBase + (ulong)before, cpu.GetGpr(Gpr.R12));
            states[t] = State(f, cpu);
        }
        Assert.Equal(states[0], states[1]);
    }

    [Fact]
    public void Run_SseAfterCr0TsInACompiledBlock_NmAtTheFirstSseInstructionOnBothTiers()
    {
        string[] states = new string[2];
        for (int t = 0; t < 2; t++)
        {
            using var f = new CpuFixture();
            CodeCache.For(f.Memory).TierThreshold = t - 1;
            Handlers(f);
            var (exit, cpu) = f.Run(a =>
            {
                a.mov(eax, 5);
                a.add(eax, 7);
                a.movq(xmm0, rax);
                a.hlt();
            }, setup: v => { v.SetIdtr(Idt, 0xFFF); v.Cr0 |= 8; });
            Assert.Equal(VcpuExitKind.Halted, exit.Kind);
            Assert.Equal(7UL, cpu.GetGpr(Gpr.R13));
            Assert.Equal(12UL, cpu.GetGpr(Gpr.Rax));
            int before = CpuFixture.Assemble(a => { a.mov(eax, 5); a.add(eax, 7); }).Length;
            Assert.Equal(CpuFixture.CodeBase + (ulong)before, cpu.GetGpr(Gpr.R12));
            states[t] = State(f, cpu);
        }
        Assert.Equal(states[0], states[1]);
    }
}
