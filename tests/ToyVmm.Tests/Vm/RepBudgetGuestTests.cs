using ToyVmm.Vm;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Vm;

/// <summary>A single rep instruction cannot escape the VM's instruction limit.</summary>
public class RepBudgetGuestTests
{
    [Fact]
    public void Run_RepStosbOf4GiB_EndsWithTheInstructionLimit()
    {
        var image = AsmGuest.Build(a =>
        {
            a.mov(rdi, 0x400000);
            a.mov(rcx, 1UL << 32);
            a.rep.stosb();
            a.Exit(9);
        });
        var run = AsmGuest.Execute(image, instructionLimit: 2_000_000);
        Assert.Equal(VmOutcome.InstructionLimit, run.Result.Outcome);
        Assert.InRange(run.Result.InstructionsRetired, 2_000_000, 2_000_000 + 8192);
    }

    [Fact]
    public void Run_RepMovsqOf4GiElements_EndsWithTheInstructionLimit()
    {
        var image = AsmGuest.Build(a =>
        {
            a.mov(rsi, 0x400000);
            a.mov(rdi, 0x1000000);
            a.mov(rcx, 1UL << 32);
            a.rep.movsq();
            a.Exit(9);
        });
        var run = AsmGuest.Execute(image, instructionLimit: 1_000_000);
        Assert.Equal(VmOutcome.InstructionLimit, run.Result.Outcome);
        Assert.InRange(run.Result.InstructionsRetired, 1_000_000, 1_000_000 + 8192);
    }
}
