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

    /// <summary>
    /// The table of 64 pointers at Data + 0x1000 to the words at Data + 0x2000 (word i holds
    /// <paramref name="value"/>(i)), entry 40 unmapped: the 41st round through it faults.
    /// </summary>
    private static void WritePointerTable(CpuFixture f, Func<int, ulong> value)
    {
        for (int i = 0; i < 64; i++)
        {
            f.W64(Data + 0x1000 + (ulong)i * 8, i == 40 ? Unmapped : Data + 0x2000 + (ulong)i * 8);
            f.W64(Data + 0x2000 + (ulong)i * 8, value(i));
        }
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
            WritePointerTable(f, i => (ulong)(i * 7 + 1));
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

    // In-region edges into blocks that start with register moves: into one that then sets every
    // flag (the edge need not store the flags), into one that then reads CF (adc: the edge must
    // store them), and into one whose load faults (#PF pushes them: the edge must store them).
    // The ALU ops are 8- and 32-bit on registers with bits above the operand set. Entry 40 of
    // the pointer table is unmapped, so the 41st round faults.
    [Fact]
    public void Run_EdgesIntoBlocksThatReplaceOrReadTheFlags_SameStateAsInterpreted()
    {
        string[] states = new string[2];
        for (int t = 0; t < 2; t++)
        {
            using var f = Fixture(t == 1);
            WritePointerTable(f, i => unchecked((ulong)i * 0x9E37_79B9_7F4A_7C15UL));
            f.Write(Handler, CpuFixture.Assemble(a => { a.mov(r8, cr2); a.pop(r9); a.mov(r12, __qword_ptr[rsp]); a.mov(r15, __qword_ptr[rsp + 16]); a.hlt(); }, Handler));
            ExceptionTests.Gate(f, Idt, 14, Handler);
            var (exit, cpu) = f.Run(a =>
            {
                var loop = a.CreateLabel();
                var odd = a.CreateLabel();
                var join = a.CreateLabel();
                var tail = a.CreateLabel();
                a.mov(rbx, Data + 0x1000);
                a.xor(ecx, ecx);
                a.mov(rax, 0xFFFF_FFFF_8000_0001UL);
                a.mov(rdx, 0x1234_5678_9ABC_DEF0UL);
                a.Label(ref loop);
                a.test(cl, 1);
                a.jne(odd);
                a.sub(rax, rcx);                      // flags: sub
                a.add(ah, dl);                        // 8-bit, high byte
                a.jmp(join);
                a.Label(ref odd);
                a.xor(rdx, rax);                      // flags: logic
                a.jmp(join);
                a.Label(ref join);
                a.mov(r10, rax);                      // bits above 32 set
                a.lea(r11, __[rcx + rcx * 2]);
                a.add(r10d, r11d);                    // replaces every flag: edges in need not store them
                a.imul(r11d, r10d);
                a.cmp(r10d, 0x8000_0040);
                a.jb(tail);
                a.mov(r12, rcx);                      // entered with cmp's flags pending
                a.adc(r13, 0);                        // reads CF: the edge must have stored it
                a.Label(ref tail);
                a.mov(r14, rcx);
                a.mov(rsi, __qword_ptr[rbx + rcx * 8]);
                a.mov(rdi, __qword_ptr[rsi]);         // faults at i = 40: #PF pushes the flags
                a.add(rax, rdi);
                a.sub(edx, edi);
                a.add(ecx, 1);
                a.cmp(ecx, 64);
                a.jne(loop);
                a.hlt();
            }, setup: v => v.SetIdtr(Idt, 0xFFF));
            Assert.Equal(VcpuExitKind.Halted, exit.Kind);
            Assert.Equal(Unmapped, cpu.GetGpr(Gpr.R8));
            Assert.Equal(40UL, cpu.GetGpr(Gpr.Rcx));
            states[t] = State(cpu);
            if (t == 1) Assert.True(cpu.TierStats.RegionBlocks >= 3, $"region blocks {cpu.TierStats.RegionBlocks}");
        }
        Assert.Equal(states[0], states[1]);
    }

    // A loop whose two halves lie on different pages: two methods, each ending in a chain to
    // the other, so compiled code runs on past the run loop's chain budget (TierHelpers.Chain).
    // The instruction limit still stops it within a chain budget, as interpreted, and a stop
    // request posted from another thread stops a loop that would never end.
    [Fact]
    public void Run_LoopAcrossTwoPages_StopsAtTheInstructionLimitAndOnAStopRequest()
    {
        static void TwoPageLoop(Iced.Intel.Assembler a, uint rounds)
        {
            var loop = a.CreateLabel();
            var far = a.CreateLabel();
            a.xor(ecx, ecx);
            a.xor(eax, eax);
            a.Label(ref loop);
            a.add(rax, rcx);
            a.xor(rax, 0x55);
            a.jmp(far);
            a.db(new byte[4096]);                     // the second half on the next page
            a.Label(ref far);
            a.add(ecx, 1);
            a.imul(edx, ecx, 3);
            a.cmp(ecx, rounds);
            a.jne(loop);
            a.hlt();
        }
        string[] states = new string[2];
        for (int t = 0; t < 2; t++)
        {
            using var f = Fixture(t == 1);
            var (exit, cpu) = f.Run(a => TwoPageLoop(a, 1_000_000), limit: 200_003);
            Assert.Equal(VcpuExitKind.InstructionLimit, exit.Kind);
            Assert.InRange(cpu.InstructionsRetired, 200_003, 200_003 + Vcpu.ChainBudget);
            states[t] = State(cpu);
            if (t == 1) Assert.True(cpu.TierStats.BlocksCompiled >= 2, $"blocks compiled {cpu.TierStats.BlocksCompiled}");
        }
        Assert.Equal(states[0], states[1]);

        using var g = Fixture(compiled: true);
        g.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a => TwoPageLoop(a, 0)));   // 2^32 rounds: only a stop ends it
        var vcpu = g.NewVcpu();
        var stopper = new Thread(() =>
        {
            while (vcpu.InstructionsRetired < 1_000_000) Thread.Yield();
            vcpu.Link.RequestStop();
        });
        stopper.Start();
        Assert.Equal(VcpuExitKind.StopRequested, vcpu.Run().Kind);
        stopper.Join();
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
