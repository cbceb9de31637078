using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu.Tier;

/// <summary>
/// What compiled code keeps exactly: each program runs on the interpreter and on the
/// translation tier (threshold 0: every block compiled at its first execution), and both end
/// in the same state, which is also checked against the known answer.
/// </summary>
public sealed class TierTests
{
    private const ulong Data = CpuFixture.DataBase;
    private const ulong Idt = 0x300000, Handler = 0x140000, Region = 0x400000;
    private const ulong Unmapped = 0x5000_0000_0000;

    public static TheoryData<int> Tiers => [-1, 0];

    private static CpuFixture Fixture(int tier)
    {
        var f = new CpuFixture();
        CodeCache.For(f.Memory).TierThreshold = tier;
        return f;
    }

    /// <summary>Everything architectural the tests compare, and the retired count.</summary>
    private static string State(Vcpu v)
    {
        var regs = string.Join(" ", Enumerable.Range(0, 16).Select(i => v.GetGpr((Gpr)i).ToString("x")));
        return $"{regs} rip={v.Rip:x} rflags={v.Rflags & 0x8D5:x} retired={v.InstructionsRetired}";
    }

    // A table of pointers walked by a loop of loads, adds, compares and a store; entry 50 points
    // at an unmapped page, so the second load of the 51st iteration faults in the middle of a block.
    private static void WriteTable(CpuFixture f)
    {
        for (int i = 0; i < 100; i++)
        {
            f.W64(Data + 0x1000 + (ulong)i * 8, i == 50 ? Unmapped : Data + 0x2000 + (ulong)i * 8);
            f.W64(Data + 0x2000 + (ulong)i * 8, (ulong)(i * 3 + 1));
        }
    }

    private static void PointerLoop(Iced.Intel.Assembler a)
    {
        var loop = a.CreateLabel();
        a.mov(rbx, Data + 0x1000);
        a.xor(ecx, ecx);
        a.xor(eax, eax);
        a.Label(ref loop);
        a.mov(rsi, __qword_ptr[rbx + rcx * 8]);
        a.add(rax, rcx);                       // flags pending at the fault
        a.mov(rdx, __qword_ptr[rsi]);          // faults at i = 50
        a.add(rax, rdx);
        a.mov(__qword_ptr[rbx + rcx * 8 + 0x3000], rax);
        a.add(ecx, 1);
        a.cmp(ecx, 100);
        a.jne(loop);
        a.hlt();
    }

    [Theory]
    [MemberData(nameof(Tiers))]
    public void Run_PageFaultInsideALoopBlock_DeliveredWithTheFaultingRipRegistersAndCount(int tier)
    {
        using var f = Fixture(tier);
        WriteTable(f);
        // #PF handler: r8 = CR2, r9 = error code, r12 = the RIP the frame names; then halt.
        f.Write(Handler, CpuFixture.Assemble(a => { a.mov(r8, cr2); a.pop(r9); a.mov(r12, __qword_ptr[rsp]); a.hlt(); }, Handler));
        ExceptionTests.Gate(f, Idt, 14, Handler);
        var (exit, cpu) = f.Run(PointerLoop, setup: v => v.SetIdtr(Idt, 0xFFF));
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(Unmapped, cpu.GetGpr(Gpr.R8));
        Assert.Equal(50UL, cpu.GetGpr(Gpr.Rcx));
        Assert.Equal(Unmapped, cpu.GetGpr(Gpr.Rsi));
        ulong sum = 0;
        for (ulong i = 0; i < 50; i++) sum += i + (i * 3 + 1);
        Assert.Equal(sum + 50, cpu.GetGpr(Gpr.Rax));   // the add before the faulting load retired
        // The faulting instruction follows the first five of the program.
        int before = CpuFixture.Assemble(a =>
        {
            a.mov(rbx, Data + 0x1000);
            a.xor(ecx, ecx);
            a.xor(eax, eax);
            a.mov(rsi, __qword_ptr[rbx + rcx * 8]);
            a.add(rax, rcx);
        }).Length;
        Assert.Equal(CpuFixture.CodeBase + (ulong)before, cpu.GetGpr(Gpr.R12));
        // 3 before the loop, 8 per full iteration, 2 of the 51st; the handler's 4 (hlt included).
        Assert.Equal(3 + 50 * 8 + 2 + 4, cpu.InstructionsRetired);
        Assert.Equal(sum, f.R64(Data + 0x1000 + 49 * 8 + 0x3000));
        if (tier >= 0) Assert.True(cpu.TierStats.OpsCompiled >= 8, $"compiled {cpu.TierStats.OpsCompiled} ops");
    }

    [Fact]
    public void Run_PageFaultInsideALoopBlock_BothTiersEndInTheSameState()
    {
        string[] states = new string[2];
        for (int t = 0; t < 2; t++)
        {
            using var f = Fixture(t - 1);
            WriteTable(f);
            f.Write(Handler, CpuFixture.Assemble(a => { a.mov(r8, cr2); a.pop(r9); a.mov(r12, __qword_ptr[rsp]); a.hlt(); }, Handler));
            ExceptionTests.Gate(f, Idt, 14, Handler);
            var (exit, cpu) = f.Run(PointerLoop, setup: v => v.SetIdtr(Idt, 0xFFF));
            Assert.Equal(VcpuExitKind.Halted, exit.Kind);
            states[t] = State(cpu) + " mem=" + Convert.ToHexString(f.Read(Data + 0x4000, 100 * 8));
        }
        Assert.Equal(states[0], states[1]);
    }

    [Theory]
    [MemberData(nameof(Tiers))]
    public void Run_LoopStoresIntoItsOwnBlock_EveryIterationRunsTheNewCode(int tier)
    {
        using var f = Fixture(tier);
        // add eax, imm32 is the first instruction (05 imm32): its immediate is at CodeBase + 1.
        var (exit, cpu) = f.Run(a =>
        {
            var loop = a.CreateLabel();
            a.Label(ref loop);
            a.add(eax, 0x1111_1111);
            a.mov(__dword_ptr[rdi], ecx);
            a.add(ecx, 1);
            a.cmp(ecx, 10);
            a.jne(loop);
            a.hlt();
        }, setup: v => { v.SetGpr(Gpr.Rdi, CpuFixture.CodeBase + 1); v.SetGpr(Gpr.Rax, 0); v.SetGpr(Gpr.Rcx, 0); });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        // Iteration 0 adds the assembled immediate; iteration i adds i - 1, stored by the one before.
        Assert.Equal(0x1111_1111UL + 36, cpu.GetGpr(Gpr.Rax));
        Assert.Equal(10 * 5 + 1, cpu.InstructionsRetired);
    }

    [Theory]
    [MemberData(nameof(Tiers))]
    public void Run_InstructionLimitInACompiledLoop_StopsWithinAChain(int tier)
    {
        using var f = Fixture(tier);
        var (exit, cpu) = f.Run(a =>
        {
            var loop = a.CreateLabel();
            a.Label(ref loop);
            a.add(rax, 1);
            a.mov(__qword_ptr[rbx], rax);
            a.jmp(loop);
        }, limit: 100_000, setup: v => v.SetGpr(Gpr.Rbx, Data));
        Assert.Equal(VcpuExitKind.InstructionLimit, exit.Kind);
        Assert.InRange(cpu.InstructionsRetired, 100_000, 100_000 + Vcpu.ChainBudget + 3);
        Assert.Equal(cpu.GetGpr(Gpr.Rax), f.R64(Data));
        // Every instruction retired is one of the three, so RAX counts the iterations exactly.
        Assert.InRange((long)cpu.GetGpr(Gpr.Rax) * 3 - cpu.InstructionsRetired, 0, 2);
    }

    [Fact]
    public void Run_CalleeRewrittenEveryIteration_CompiledMethodsAreReleasedWithTheirSlots()
    {
        const int n = 1500;
        using var f = Fixture(0);
        f.Write(Region, [0x05, 0, 0, 0, 0, 0xC3]);   // add eax, imm32; ret
        var (exit, cpu) = f.Run(a =>
        {
            var loop = a.CreateLabel();
            a.xor(eax, eax);
            a.xor(ecx, ecx);
            a.mov(rdi, Region + 1);
            a.mov(rdx, Region);
            a.Label(ref loop);
            a.mov(__dword_ptr[rdi], ecx);      // a write to the callee's code page: its block is retired
            a.call(rdx);
            a.add(ecx, 1);
            a.cmp(ecx, n);
            a.jne(loop);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal((ulong)n * (n - 1) / 2, cpu.GetGpr(Gpr.Rax));
        var st = cpu.TierStats;
        Assert.True(st.BlocksCompiled >= n, $"compiled {st.BlocksCompiled}");
        Assert.True(st.Freed >= n - 16, $"freed {st.Freed}");
        Assert.True(st.Live <= 16, $"live {st.Live}");
    }

    [Fact]
    public void Run_LockedAddFromTwoVcpusInCompiledLoops_NoIncrementIsLost()
    {
        const int perVcpu = 200_000;
        using var f = Fixture(0);
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a =>
        {
            var loop = a.CreateLabel();
            a.mov(rbx, Data);
            a.mov(ecx, perVcpu);
            a.Label(ref loop);
            a.mov(rax, __qword_ptr[rbx + 8]);  // compiled
            a.@lock.add(__qword_ptr[rbx], 1);  // handed to the interpreter's atomic handler
            a.sub(ecx, 1);
            a.jne(loop);
            a.hlt();
        }));
        var cpus = new[] { f.NewVcpu(0, 2), f.NewVcpu(1, 2) };
        var exits = new VcpuExit[2];
        var threads = Enumerable.Range(0, 2).Select(i => new Thread(() => exits[i] = cpus[i].Run(50_000_000))).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        Assert.All(exits, e => Assert.Equal(VcpuExitKind.Halted, e.Kind));
        Assert.Equal(2UL * perVcpu, f.R64(Data));
        Assert.True(cpus[0].TierStats.BlocksCompiled > 0);
    }

    [Fact]
    public void Run_ThresholdAboveZero_HotLoopIsCompiledOnTheBackgroundThread()
    {
        using var f = new CpuFixture();
        CodeCache.For(f.Memory).TierThreshold = 1;
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a =>
        {
            var loop = a.CreateLabel();
            a.Label(ref loop);
            a.add(rax, 1);
            a.cmp(rax, rbx);
            a.jne(loop);
            a.hlt();
        }));
        var cpu = f.NewVcpu();
        cpu.SetGpr(Gpr.Rbx, ulong.MaxValue);
        // Run in slices until the compiler thread has swapped the loop in (it is queued at the
        // first entry); bounded by a generous number of slices, not by time.
        for (int slice = 0; slice < 20_000 && cpu.TierStats.BlocksCompiled == 0; slice++)
            Assert.Equal(VcpuExitKind.InstructionLimit, cpu.Run(100_000).Kind);
        Assert.True(cpu.TierStats.BlocksCompiled > 0);
        cpu.SetGpr(Gpr.Rbx, cpu.GetGpr(Gpr.Rax) + 100_000);
        long before = cpu.InstructionsRetired;
        Assert.Equal(VcpuExitKind.Halted, cpu.Run(10_000_000).Kind);
        Assert.Equal(cpu.GetGpr(Gpr.Rbx), cpu.GetGpr(Gpr.Rax));
        Assert.Equal(before + 3 * 100_000 + 1, cpu.InstructionsRetired);
    }
}
