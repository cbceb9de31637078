using ToyVmm.Cli;
using ToyVmm.Loader;
using ToyVmm.Mmu.Host;
using ToyVmm.Tests.Vm;
using ToyVmm.Vm;
using Xunit;

namespace ToyVmm.Tests.Cli;

/// <summary>
/// A host that fails under a running guest (a full disk under the swap file, a read
/// error, no frame to reclaim) ends the VM as a host failure with a message that
/// names the cause, not as a guest crash.
/// </summary>
public class HostFailureTests
{
    private const ulong Ram = 16UL << 20;

    private sealed class Injector : ISwapFaultInjector
    {
        public Func<Exception?>? Write;
        public Func<Exception?>? Read;
        public Exception? BeforeWrite(uint firstSlot, int slots) => Write?.Invoke();
        public Exception? BeforeRead(uint slot) => Read?.Invoke();
    }

    /// <summary>Runs memseq (a working set of half of RAM) with a frame pool of a quarter of RAM.</summary>
    private static (VmResult Result, string Cause) RunUnderPressure(Injector injector, ulong swapBytes = 0)
    {
        var image = ElfLoader.LoadFile(GuestFiles.Elf("memseq"), Ram);
        using var backing = new HostBackedMemory(Ram, 1, new GuestMemoryConfig(HostMemoryBytes: Ram / 4, SwapBytes: swapBytes));
        backing.Host.Swap.FaultInjector = injector;
        using var console = new MemoryStream();
        using var vm = VirtualMachine.Create(new VmConfig(Ram, 1, InstructionLimit: 20_000_000_000), image, console, _ => backing.Memory);
        var result = vm.Run();
        backing.StopBackground();
        return (result, HostFailureCause.Describe(backing.Host.Stats));
    }

    [Fact]
    public void SwapWriteFails_FullDisk_HostFailureNamingTheDisk()
    {
        var (result, cause) = RunUnderPressure(new Injector { Write = () => new IOException("No space left on device") });
        Assert.Equal(VmOutcome.HostFailure, result.Outcome);
        Assert.StartsWith("swap write failed: No space left on device", cause);
        Assert.Contains(HostFailureCause.NoFrame, cause);
    }

    [Fact]
    public void SwapReadFails_HostFailureNamingTheRead()
    {
        var (result, cause) = RunUnderPressure(new Injector { Read = () => new IOException("Input/output error") });
        Assert.Equal(VmOutcome.HostFailure, result.Outcome);
        Assert.StartsWith("swap read failed: Input/output error", cause);
    }

    [Fact]
    public void FramePoolExhausted_SwapFull_HostFailureNoFrameToReclaim()
    {
        var (result, cause) = RunUnderPressure(new Injector(), swapBytes: 16 * 4096);
        Assert.Equal(VmOutcome.HostFailure, result.Outcome);
        Assert.Equal($"{HostFailureCause.NoFrame} (the swap file is full)", cause);
    }

    [Fact]
    public void Describe_NoSwapError_SaysNoFrameToReclaim()
    {
        Assert.Equal(HostFailureCause.NoFrame, HostFailureCause.Describe(new HostStats()));
    }
}
