using System.Runtime.InteropServices;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// A 2 MiB-aligned native block mapped read/write/execute with <c>mmap</c>, in
/// which the native side of a differential test runs its thunk and snippet.
/// </summary>
public sealed unsafe class ExecutableRegion : IDisposable
{
    private const int ProtRead = 1, ProtWrite = 2, ProtExec = 4;
    private const int MapPrivate = 0x02, MapAnonymous = 0x20, Map32Bit = 0x40;

    [DllImport("libc", SetLastError = true)]
    private static extern nint mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);

    [DllImport("libc", SetLastError = true)]
    private static extern int munmap(nint addr, nuint length);

    private nint _mapping;
    private readonly nuint _mappingLength;

    public ExecutableRegion()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            throw new PlatformNotSupportedException("native differential runs need Linux on x86-64");
        _mappingLength = (nuint)(2 * RegionLayout.BlockSize);
        // Below 2 GiB (MAP_32BIT), so that 32-bit addressing (0x67 prefix) reaches the block too.
        _mapping = mmap(0, _mappingLength, ProtRead | ProtWrite | ProtExec, MapPrivate | MapAnonymous | Map32Bit, -1, 0);
        if (_mapping == -1)
            _mapping = mmap(0, _mappingLength, ProtRead | ProtWrite | ProtExec, MapPrivate | MapAnonymous, -1, 0);
        if (_mapping == -1)
            throw new InvalidOperationException($"mmap of an RWX block failed, errno {Marshal.GetLastPInvokeError()}");
        ulong aligned = ((ulong)_mapping + RegionLayout.BlockSize - 1) & ~(RegionLayout.BlockSize - 1);
        Base = aligned;
        if (Base < RegionLayout.BlockSize) throw new InvalidOperationException($"the block at 0x{Base:x} overlaps the guest's low 2 MiB");
    }

    /// <summary>True when the whole block lies below 4 GiB (32-bit addresses reach it).</summary>
    public bool Below4G => Base + RegionLayout.BlockSize <= 1UL << 32;

    /// <summary>Address of the 2 MiB-aligned block (the same number is the guest-virtual address).</summary>
    public ulong Base { get; }

    /// <summary>The bytes at <paramref name="offset"/> in the block.</summary>
    public Span<byte> Bytes(int offset, int length)
    {
        if (_mapping == 0) throw new ObjectDisposedException(nameof(ExecutableRegion));
        if (offset < 0 || length < 0 || (ulong)offset + (ulong)length > RegionLayout.BlockSize)
            throw new ArgumentOutOfRangeException(nameof(offset));
        // SAFETY: the block [Base, Base + 2 MiB) lies inside the live mapping (checked above).
        return new Span<byte>((void*)(Base + (ulong)offset), length);
    }

    public void Dispose()
    {
        if (_mapping != 0)
        {
            munmap(_mapping, _mappingLength);
            _mapping = 0;
        }
    }
}
