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
        Assert.Contains(HostFailureCause.OutOfSwapSpace, cause);
        Assert.Contains(HostFailureCause.NoFrame, cause);
    }

    /// <summary>
    /// The swap file's filesystem fills while the guest runs (the first writes succeed,
    /// then every one fails with ENOSPC): the run ends as a host failure naming the full
    /// swap space, with the checker on and no violation, and the host's bookkeeping intact
    /// (every page the guest wrote is still in a frame or a good swap slot).
    /// </summary>
    [Fact]
    public void SwapFileSystemFillsUp_HostFailureOutOfSwapSpace_NoViolation()
    {
        long slotsWritten = 0;
        var injector = new Injector
        {
            Write = () => Interlocked.Add(ref slotsWritten, 0) < 512
                ? null
                : new IOException("No space left on device", 28),
        };
        var image = ElfLoader.LoadFile(GuestFiles.Elf("memseq"), Ram);
        using var backing = new HostBackedMemory(Ram, 1, new GuestMemoryConfig(HostMemoryBytes: Ram / 4, Check: true));
        backing.Host.Swap.FaultInjector = new CountingInjector(injector, n => Interlocked.Add(ref slotsWritten, n));
        using var console = new MemoryStream();
        using var vm = VirtualMachine.Create(new VmConfig(Ram, 1, InstructionLimit: 20_000_000_000), image, console, _ => backing.Memory);
        backing.Checker!.Violated += v => vm.Stop(VmOutcome.InvariantViolation, v.ToString());
        var result = vm.Run();
        backing.StopBackground();

        Assert.Equal(VmOutcome.HostFailure, result.Outcome);
        string cause = HostFailureCause.Describe(backing.Host.Stats);
        Assert.StartsWith("swap write failed: No space left on device", cause);
        Assert.Contains(HostFailureCause.OutOfSwapSpace, cause);
        Assert.Null(backing.Checker.FirstViolation);
        Assert.True(backing.Host.Stats.PagesWrittenToSwap > 0, "some writes went through before the filesystem filled");
        Assert.Empty(backing.Host.CheckConsistency());
    }

    /// <summary>Passes writes to <paramref name="inner"/> and counts the slots of those it lets through.</summary>
    private sealed class CountingInjector(Injector inner, Action<int> written) : ISwapFaultInjector
    {
        public Exception? BeforeWrite(uint firstSlot, int slots)
        {
            var e = inner.BeforeWrite(firstSlot, slots);
            if (e is null) written(slots);
            return e;
        }

        public Exception? BeforeRead(uint slot) => inner.BeforeRead(slot);
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
