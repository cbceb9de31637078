using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu.Tier;

/// <summary>
/// Regions: a hot block compiled with the blocks its direct branches reach, so a loop of
/// several blocks runs inside one method. Each program runs interpreted and compiled with a
/// synchronous threshold of 2 (the loop head is compiled at its second round, when the blocks
/// of the body are decoded and join its region); both end in the same state.
/// </summary>
public sealed class RegionTests
{
    private const ulong Data = CpuFixture.DataBase;
    private const ulong Idt = 0x300000, Handler = 0x140000;
    private const ulong Unmapped = 0x5000_0000_0000;

    private static CpuFixture Fixture(bool compiled)
    {
        var f = new CpuFixture();
        var cache = CodeCache.For(f.Memory);
        cache.TierSynchronous = true;
        cache.TierThreshold = compiled ? 2 : -1;
        return f;
    }

    private static string State(Vcpu v)
    {
        var regs = string.Join(" ", Enumerable.Range(0, 16).Select(i => v.GetGpr((Gpr)i).ToString("x")));
        return $"{regs} rip={v.Rip:x} rflags={v.Rflags & 0x8D5:x} retired={v.InstructionsRetired}";
    }

    /// <summary>
    /// A loop of four blocks (head, a conditional arm, the join, the back edge), using the forms
    /// compiled inline: adc/sbb, inc/dec, read-modify-write on memory, cmov/setcc, push/pop,
    /// movzx from a register, imul from memory, cdqe; a call to a function on the same page.
    /// </summary>
    private static void BusyLoop(Iced.Intel.Assembler a, int rounds)
    {
        var loop = a.CreateLabel();
        var skip = a.CreateLabel();
        var func = a.CreateLabel();
        var done = a.CreateLabel();
        a.mov(rbx, Data);
        a.xor(ecx, ecx);
        a.mov(rax, 0x7FFF_FFF0UL);
        a.xor(edx, edx);
        a.Label(ref loop);
        a.mov(rsi, rcx);
        a.and(esi, 7);
        a.imul(edi, __dword_ptr[rbx + rsi * 4]);   // imul r32, m32
        a.add(rax, rcx);
        a.adc(rdx, 0);
        a.test(cl, 1);
        a.je(skip);
        a.inc(__qword_ptr[rbx + 0x100]);            // RMW
        a.sbb(edx, eax);
        a.add(__dword_ptr[rbx + rsi * 4 + 0x40], ecx);
        a.Label(ref skip);
        a.push(rax);
        a.dec(eax);
        a.cmp(eax, edx);
        a.cmovl(eax, edx);
        a.setg(r8b);
        a.movzx(r9d, r8b);
        a.add(r10, r9);
        a.cdqe();
        a.pop(r11);
        a.call(func);
        a.add(ecx, 1);
        a.cmp(ecx, rounds);
        a.jne(loop);
        a.jmp(done);
        a.Label(ref func);
        a.xor(r11, rax);
        a.neg(__qword_ptr[rbx + 0x108]);
        a.ret();
        a.Label(ref done);
        a.hlt();
    }

    private static void SeedData(CpuFixture f)
    {
        for (int i = 0; i < 8; i++) f.W64(Data + (ulong)i * 8, (ulong)(0x1234_5678 * (i + 3)));
        f.W64(Data + 0x108, 5);
    }

    [Fact]
    public void Run_LoopOfSeveralBlocks_CompiledAsOneRegionAndSameStateAsInterpreted()
    {
        string[] states = new string[2];
        for (int t = 0; t < 2; t++)
        {
            using var f = Fixture(t == 1);
            SeedData(f);
            var (exit, cpu) = f.Run(a => BusyLoop(a, 5000), setup: v => v.SetGpr(Gpr.Rdi, 3));
            Assert.Equal(VcpuExitKind.Halted, exit.Kind);
            states[t] = State(cpu) + " mem=" + Convert.ToHexString(f.Read(Data, 0x110));
            if (t == 1)
            {
                var st = cpu.TierStats;
                Assert.True(st.RegionBlocks >= 3, $"region blocks {st.RegionBlocks}");
            }
        }
        Assert.Equal(states[0], states[1]);
    }

    [Fact]
    public void Run_InstructionLimitInsideARegionLoop_SameCountAsInterpreted()
    {
        string[] states = new string[2];
        for (int t = 0; t < 2; t++)
        {
            using var f = Fixture(t == 1);
            SeedData(f);
            var (exit, cpu) = f.Run(a => BusyLoop(a, 1_000_000), limit: 200_000, setup: v => v.SetGpr(Gpr.Rdi, 3));
            Assert.Equal(VcpuExitKind.InstructionLimit, exit.Kind);
            // The limit is checked at block boundaries, in-region edges included.
            Assert.InRange(cpu.InstructionsRetired, 200_000, 200_000 + Vcpu.ChainBudget);
            states[t] = State(cpu) + " mem=" + Convert.ToHexString(f.Read(Data, 0x110));
        }
        Assert.Equal(states[0], states[1]);
    }

    // A loop whose second block loads through a table of pointers; entry 40 is unmapped, so the
    // 41st round faults in a block entered through an in-region edge.
    [Fact]
    public void Run_PageFaultInANonEntryRegionBlock_SameRipRegistersAndCountAsInterpreted()
    {
        string[] states = new string[2];
        for (int t = 0; t < 2; t++)
        {
            using var f = Fixture(t == 1);
            for (int i = 0; i < 64; i++)
            {
                f.W64(Data + 0x1000 + (ulong)i * 8, i == 40 ? Unmapped : Data + 0x2000 + (ulong)i * 8);
                f.W64(Data + 0x2000 + (ulong)i * 8, (ulong)(i * 7 + 1));
            }
            f.Write(Handler, CpuFixture.Assemble(a => { a.mov(r8, cr2); a.pop(r9); a.mov(r12, __qword_ptr[rsp]); a.hlt(); }, Handler));
            ExceptionTests.Gate(f, Idt, 14, Handler);
            var (exit, cpu) = f.Run(a =>
            {
                var loop = a.CreateLabel();
                var odd = a.CreateLabel();
                var join = a.CreateLabel();
                a.mov(rbx, Data + 0x1000);
                a.xor(ecx, ecx);
                a.xor(eax, eax);
                a.Label(ref loop);
                a.test(cl, 1);
                a.jne(odd);
                a.add(rax, 3);
                a.jmp(join);
                a.Label(ref odd);
                a.inc(rdx);
                a.Label(ref join);
                a.mov(rsi, __qword_ptr[rbx + rcx * 8]);
                a.adc(rax, rcx);                      // flags pending at the fault
                a.mov(rdi, __qword_ptr[rsi]);         // faults at i = 40
                a.add(rax, rdi);
                a.mov(__qword_ptr[rbx + rcx * 8 + 0x3000], rax);
                a.add(ecx, 1);
                a.cmp(ecx, 64);
                a.jne(loop);
                a.hlt();
            }, setup: v => v.SetIdtr(Idt, 0xFFF));
            Assert.Equal(VcpuExitKind.Halted, exit.Kind);
            Assert.Equal(Unmapped, cpu.GetGpr(Gpr.R8));
            Assert.Equal(40UL, cpu.GetGpr(Gpr.Rcx));
            states[t] = State(cpu) + " mem=" + Convert.ToHexString(f.Read(Data + 0x4000, 64 * 8));
            if (t == 1) Assert.True(cpu.TierStats.RegionBlocks >= 2, $"region blocks {cpu.TierStats.RegionBlocks}");
        }
        Assert.Equal(states[0], states[1]);
    }

    // The loop rewrites the immediate of an instruction in its second block every round: the
    // write invalidates that block, the in-region edge into it then leaves the compiled code,
    // and every round runs the new immediate.
    [Fact]
    public void Run_LoopRewritesANonEntryBlockOfItsRegion_EveryRoundRunsTheNewCode()
    {
        string[] states = new string[2];
        for (int t = 0; t < 2; t++)
        {
            using var f = Fixture(t == 1);
            // Layout: head (6 bytes: test cl,1 / jne +N), arm block, target block starting with add eax, imm32.
            var code = CpuFixture.Assemble(a => SelfWritingLoop(a, 0));
            int addOffset = FindAddEaxImm(code);
            var (exit, cpu) = f.Run(a => SelfWritingLoop(a, addOffset), setup: v => { v.SetGpr(Gpr.Rax, 0); v.SetGpr(Gpr.Rcx, 0); });
            Assert.Equal(VcpuExitKind.Halted, exit.Kind);
            states[t] = State(cpu);
        }
        Assert.Equal(states[0], states[1]);
    }

    private static void SelfWritingLoop(Iced.Intel.Assembler a, int addOffset)
    {
        var loop = a.CreateLabel();
        var odd = a.CreateLabel();
        var join = a.CreateLabel();
        a.mov(rdi, CpuFixture.CodeBase + (ulong)addOffset + 1);
        a.Label(ref loop);
        a.test(cl, 1);
        a.jne(odd);
        a.add(rdx, 1);
        a.jmp(join);
        a.Label(ref odd);
        a.sub(rdx, 1);
        a.Label(ref join);
        a.add(eax, 0x1000_0000);                 // rewritten: its immediate becomes the round number
        a.mov(__dword_ptr[rdi], ecx);
        a.add(ecx, 1);
        a.cmp(ecx, 300);
        a.jne(loop);
        a.hlt();
    }

    private static int FindAddEaxImm(byte[] code)
    {
        for (int i = 0; i + 4 < code.Length; i++)
            if (code[i] == 0x05 && BitConverter.ToUInt32(code, i + 1) == 0x1000_0000) return i;
        throw new InvalidOperationException("add eax, imm32 not found");
    }
}
