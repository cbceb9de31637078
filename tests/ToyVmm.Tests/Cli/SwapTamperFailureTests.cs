using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using ToyVmm.Cli;
using ToyVmm.Loader;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Host;
using ToyVmm.Vm;
using Xunit;

namespace ToyVmm.Tests.Cli;

/// <summary>
/// The swap file changed under a running guest (a slot corrupted, the file truncated)
/// just before the host reads a page back: the VM ends as a host failure whose message
/// names the cause, never with the guest reading bad data (memseq checks every page it
/// wrote and would exit with its own status). Complements HostFailureTests (I/O errors,
/// a full disk, an exhausted frame pool).
/// </summary>
public partial class SwapTamperFailureTests : IDisposable
{
    private const ulong Ram = 16UL << 20;
    private readonly string _dir = Directory.CreateTempSubdirectory("toyvmm-tamper-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Changes the file once, at the first read, as another process ignoring the lock would.</summary>
    private sealed class TamperAtFirstRead(Action<uint> tamper) : ISwapFaultInjector
    {
        private int _done;
        public Exception? BeforeWrite(uint firstSlot, int slots) => null;
        public Exception? BeforeRead(uint slot)
        {
            if (Interlocked.Exchange(ref _done, 1) == 0) tamper(slot);
            return null;
        }
    }

    private (VmResult Result, string Cause) RunMemseq(Func<string, ISwapFaultInjector> injector)
    {
        string swap = Path.Combine(_dir, "memseq.swap");
        var image = ElfLoader.LoadFile(GuestFiles.Elf("memseq"), Ram);
        using var backing = new HostBackedMemory(Ram, 1, new GuestMemoryConfig(HostMemoryBytes: Ram / 4, SwapFilePath: swap));
        backing.Host.Swap.FaultInjector = injector(swap);
        using var vm = VirtualMachine.Create(new VmConfig(Ram, 1, InstructionLimit: 20_000_000_000), image, new MemoryStream(), _ => backing.Memory);
        using var hang = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var result = vm.Run(hang.Token);
        backing.StopBackground();
        Assert.NotEqual(VmOutcome.Interrupted, result.Outcome);   // the guard, not the guest, ended it: a hang
        return (result, HostFailureCause.Describe(backing.Host.Stats));
    }

    [Fact]
    public void Run_SlotCorruptedBeforeItsRead_HostFailureNamingTheChecksum()
    {
        uint corrupted = uint.MaxValue;
        var (result, cause) = RunMemseq(path => new TamperAtFirstRead(slot =>
        {
            corrupted = slot;
            FlipByte(path, ((long)slot << Page.Shift) + 321);
        }));
        Assert.Equal(VmOutcome.HostFailure, result.Outcome);
        Assert.Equal($"swap checksum mismatch on slot {corrupted} (the swap file was changed behind the VMM's back?)", cause);
    }

    [Fact]
    public void Run_SwapFileTruncatedBeforeARead_HostFailureNamingTheTruncation()
    {
        var (result, cause) = RunMemseq(path => new TamperAtFirstRead(slot => Truncate(path, 0)));
        Assert.Equal(VmOutcome.HostFailure, result.Outcome);
        // The read after the truncation finds the end of the file, unless the background
        // reclaimer wrote a later slot first and so re-extended the file with a hole: then
        // the read comes back as zeros and fails its checksum. Both name the tampering.
        if (cause.StartsWith("swap read failed:", StringComparison.Ordinal))
        {
            Assert.StartsWith($"swap read failed: the swap file ends early: 0 of {Page.Size} bytes", cause);
            Assert.Contains("truncated", cause);
        }
        else
        {
            Assert.Matches(@"^swap checksum mismatch on slot \d+ \(the swap file was changed behind the VMM's back\?\)$", cause);
        }
    }

    // Raw open(2) and truncate(2): they take no flock, so the locked swap file can be changed.
    private static void FlipByte(string path, long offset)
    {
        int fd = Open(path, 2 /* O_RDWR */);
        if (fd < 0) throw new IOException($"open {path}: errno {Marshal.GetLastPInvokeError()}");
        using var h = new SafeFileHandle(fd, ownsHandle: true);
        var b = new byte[1];
        RandomAccess.Read(h, b, offset);
        b[0] ^= 0x40;
        RandomAccess.Write(h, (ReadOnlySpan<byte>)b, offset);
    }

    private static void Truncate(string path, long length)
    {
        if (TruncateFile(path, length) != 0) throw new IOException($"truncate {path}: errno {Marshal.GetLastPInvokeError()}");
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "truncate", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int TruncateFile(string path, long length);
}
