using ToyVmm.Cpu;
using ToyVmm.Mmu.Secondary;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// Every element of a rep counts against the instruction budget, and a long rep yields
/// (restartable, RCX/RSI/RDI as far as it got) for the budget and for link requests.
/// </summary>
public class RepBudgetTests
{
    private const ulong Dest = 0x400000, Src = 0x800000;
    private const ulong FourGiB = 1UL << 32;
    // A yield is looked at after every 256 elements or the page that passes them.
    private const long Slack = 4096 + 256;

    [Fact]
    public void Run_RepStosbOf4GiB_StopsAtTheInstructionLimitWithRegistersConsistent()
    {
        using var f = new CpuFixture(32 << 20);
        const long limit = 1_000_000;
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rdi, Dest);
            a.mov(rcx, FourGiB);
            a.mov(al, 0x5A);
            a.rep.stosb();
            a.hlt();
        }, limit);
        Assert.Equal(VcpuExitKind.InstructionLimit, exit.Kind);
        Assert.InRange(cpu.InstructionsRetired, limit, limit + Slack);
        ulong done = FourGiB - cpu.GetGpr(Gpr.Rcx);
        Assert.Equal(Dest + done, cpu.GetGpr(Gpr.Rdi));
        Assert.InRange((long)done, limit - 10, limit + Slack);
        Assert.Equal(CpuFixture.CodeBase + 10 + 10 + 2, cpu.Rip);   // restarts at the rep
        Assert.Equal(-1, Array.FindIndex(f.Read(Dest, (int)done), b => b != 0x5A));
        Assert.Equal(0, f.Read(Dest + done, 1)[0]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Run_RepMovsbOf4GiB_StopsAtTheInstructionLimit(bool backwards)
    {
        using var f = new CpuFixture(32 << 20);
        const long limit = 300_000;
        ulong src = backwards ? Src + 0x7FFFFF : Src, dst = backwards ? Dest + 0x3FFFFF : Dest;
        var (exit, cpu) = f.Run(a =>
        {
            if (backwards) a.std();
            a.mov(rsi, src);
            a.mov(rdi, dst);
            a.mov(rcx, FourGiB);
            a.rep.movsb();
            a.hlt();
        }, limit);
        Assert.Equal(VcpuExitKind.InstructionLimit, exit.Kind);
        Assert.InRange(cpu.InstructionsRetired, limit, limit + Slack);
        ulong done = FourGiB - cpu.GetGpr(Gpr.Rcx);
        Assert.Equal(backwards ? dst - done : dst + done, cpu.GetGpr(Gpr.Rdi));
        Assert.Equal(backwards ? src - done : src + done, cpu.GetGpr(Gpr.Rsi));
    }

    [Fact]
    public void Run_RepStosqResumedAfterTheLimit_FinishesWithTheSameResult()
    {
        using var f = new CpuFixture(32 << 20);
        const ulong count = 300_000;
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a =>
        {
            a.mov(rdi, Dest);
            a.mov(rcx, count);
            a.mov(rax, 0x1122334455667788);
            a.rep.stosq();
            a.mov(r8, 1);
            a.hlt();
        }));
        var cpu = f.NewVcpu();
        int slices = 0;
        VcpuExit exit;
        while ((exit = cpu.Run(50_000)).Kind == VcpuExitKind.InstructionLimit) slices++;
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.InRange(slices, 5, 7);
        Assert.Equal(1UL, cpu.GetGpr(Gpr.R8));
        Assert.Equal(0UL, cpu.GetGpr(Gpr.Rcx));
        Assert.Equal(Dest + count * 8, cpu.GetGpr(Gpr.Rdi));
        Assert.Equal(0x1122334455667788UL, f.R64(Dest + (count - 1) * 8));
        Assert.Equal(0UL, f.R64(Dest + count * 8));
        // Elements count as instructions: 3 movs + 300000 elements + mov + hlt.
        Assert.Equal(3 + (long)count + 2, cpu.InstructionsRetired);
    }

    [Fact]
    public void Run_RepCmpsbMismatch_CountsTheElementsCompared()
    {
        using var f = new CpuFixture();
        f.Write(Dest + 1000, [1]);   // first difference at element 1000
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rsi, Dest);
            a.mov(rdi, Src);
            a.mov(rcx, 5000);
            a.repe.cmpsb();
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(5000UL - 1001, cpu.GetGpr(Gpr.Rcx));
        Assert.Equal(3 + 1001 + 1L, cpu.InstructionsRetired);
    }

    [Fact]
    public void Run_RepStosbLoopWithoutLimit_AnswersAStopRequestWithRegistersConsistent()
    {
        using var f = new CpuFixture(32 << 20);
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a =>
        {
            var again = a.CreateLabel();
            a.Label(ref again);
            a.mov(rdi, Dest);
            a.mov(rcx, 0x1000000);
            a.mov(al, 0xFF);
            a.rep.stosb();
            a.jmp(again);
        }));
        var cpu = f.NewVcpu();
        cpu.SetGpr(Gpr.Rdi, Dest + 0x1000000);   // consistent even if the stop comes before the first block
        cpu.SetGpr(Gpr.Rcx, 0);
        var t = new Thread(() =>
        {
            while (cpu.Link.Mode != VcpuMode.InGuest) Thread.Yield();
            cpu.Link.RequestStop();
        });
        t.Start();
        var exit = cpu.Run();
        t.Join();
        Assert.Equal(VcpuExitKind.StopRequested, exit.Kind);
        // Stopped between elements of the rep or after it: never with RCX and RDI out of step.
        Assert.Equal(0x1000000 - cpu.GetGpr(Gpr.Rcx), cpu.GetGpr(Gpr.Rdi) - Dest);
    }
}
