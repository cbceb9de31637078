using ToyVmm.Tests.Vm;
using ToyVmm.Vm;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Devices;

/// <summary>
/// PAGEOUT and DISCARD act only on the guest's own part of RAM (GUEST-ABI.md): a range
/// that touches the VMM's reserved top (page tables, vCPU stacks) or is empty returns
/// -22 and changes nothing, so a guest cannot discard the page tables it runs on.
/// </summary>
public class HypercallRangeTests
{
    private const ulong Ram = 8UL << 20;
    private const ulong ReservedTop = Ram - (1UL << 20);

    /// <summary>Calls <paramref name="number"/> on [start, start + bytes), expects -22, then proves the guest still runs and its data page is intact.</summary>
    private static void ExpectRefused(uint number, ulong start, ulong bytes)
    {
        var run = AsmGuest.Execute(AsmGuest.Build(a =>
        {
            a.mov(rdi, AsmGuest.Data);
            a.mov(__qword_ptr[rdi], 0x77);
            a.mov(eax, number);
            a.mov(rbx, start);
            a.mov(rcx, bytes);
            a.vmcall();
            a.ExpectEqual(rax, unchecked((ulong)-22L), 1);
            // Calls and pushes go through the stack and the page tables in the reserved top.
            a.push(rax);
            a.pop(rax);
            a.mov(rax, __qword_ptr[rdi]);
            a.ExpectEqual(rax, 0x77, 2);
            a.Exit(0);
        }, Ram), ram: Ram);
        Assert.Equal(VmOutcome.ExitPort, run.Result.Outcome);
        Assert.Equal(0, run.Result.GuestStatus);
    }

    [Theory]
    [InlineData(0x101u, ReservedTop, 0x1000UL)]            // DISCARD of the first reserved page
    [InlineData(0x101u, ReservedTop + 0x2000, 0x1000UL)]   // deeper in the reserved top
    [InlineData(0x101u, ReservedTop - 0x1000, 0x2000UL)]   // straddling into it
    [InlineData(0x100u, ReservedTop, 1UL << 20)]           // PAGEOUT of all of it
    [InlineData(0x101u, 0x300000UL, 0UL)]                   // empty
    [InlineData(0x100u, 0x300000UL, 0UL)]                   // empty
    public void Hypercall_RangeOutsideTheGuestsOwnRam_ReturnsEinvalAndChangesNothing(uint number, ulong start, ulong bytes) =>
        ExpectRefused(number, start, bytes);
}
