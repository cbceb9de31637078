using ToyVmm.Tests.Vm;
using ToyVmm.Vm;
using Xunit;

namespace ToyVmm.Tests.Guests;

/// <summary>Runs the small-kernel guest once for all of <see cref="KernelGuestTests"/>.</summary>
public sealed class KernelRun
{
    private readonly Lazy<AsmGuest.Run> _run = new(() => ShippedGuestTests.RunInVm(GuestManifest.Get(KernelGuestTests.Name)));

    public AsmGuest.Run Run => _run.Value;

    public string[] Lines => Run.Console.Split('\n');
}

/// <summary>
/// The small-kernel guest (its own page tables, GDT/TSS/IDT, syscall MSRs and CPL 3):
/// each of its paths — page faults, exceptions, privilege changes — has its own test
/// with the console lines it must print.
/// </summary>
public class KernelGuestTests : IClassFixture<KernelRun>
{
    public const string Name = "kernel";

    private readonly KernelRun _kernel;

    public KernelGuestTests(KernelRun kernel) => _kernel = kernel;

    private void AssertLinesOk(params string[] checks)
    {
        var lines = _kernel.Lines;
        foreach (var check in checks)
            Assert.True(lines.Contains($"  {check}: ok"),
                $"expected the line '  {check}: ok' in the kernel's console:\n{_kernel.Run.Console}\n({_kernel.Run.Result.Outcome}: {_kernel.Run.Result.Message})");
    }

    [Fact]
    public void Kernel_Run_StartsPassesAndExitsZero()
    {
        var lines = _kernel.Lines;
        Assert.Equal("kernel: starting", lines[0]);
        Assert.Contains("kernel: PASS", lines);
        Assert.DoesNotContain(lines, l => l.EndsWith(": FAIL"));
        Assert.True(_kernel.Run.Result.IsNormalExit, _kernel.Run.Result.Message);
        Assert.Equal(0, _kernel.Run.Result.GuestStatus);
    }

    [Fact]
    public void Kernel_OwnTablesAndDescriptors_Load()
    {
        AssertLinesOk(
            "own page tables loaded (CR3)",
            "GDT, TSS and IDT loaded");
    }

    [Fact]
    public void Kernel_PageFaultPath_DemandPagingAccessedDirtyAndInvlpg()
    {
        AssertLinesOk(
            "read fault: error code 0, CR2 exact",
            "accessed bit set by the read, dirty bit clear",
            "dirty bit set by the write",
            "write fault: error code W",
            "16 more pages mapped on first touch, values kept",
            "write to read-only page -> #PF P|W, then allowed",
            "invlpg after remap reads the new frame",
            "invlpg after unmap faults again",
            "CR3 switch between two address spaces",
            "user read of a kernel page -> #PF P|U, task ended");
    }

    [Fact]
    public void Kernel_ExceptionPath_HandledThroughItsIdt()
    {
        AssertLinesOk(
            "int3 -> #BP handled",
            "ud2 -> #UD skipped (twice)",
            "divide by zero -> #DE fixed up",
            "idiv overflow -> #DE fixed up");
    }

    [Fact]
    public void Kernel_PrivilegePath_UserModeRoundTrips()
    {
        AssertLinesOk(
            "iretq to CPL 3 (CS 0x2b, SS 0x23)",
            "syscall/sysret round trip",
            "registers kept across syscall",
            "int 0x80 from CPL 3, iretq back",
            "cli at CPL 3 -> #GP, skipped",
            "SYS_EXIT returns to the kernel",
            "back at CPL 0, kernel still works");
    }
}
