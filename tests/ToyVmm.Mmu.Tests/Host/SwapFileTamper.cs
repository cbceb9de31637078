using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ToyVmm.Mmu.Tests.Host;

/// <summary>
/// Changes a swap file behind the host's back, as another process that ignores
/// advisory locks would: raw open(2), which takes no flock (a FileStream would be
/// refused, the swap file being locked).
/// </summary>
internal static partial class SwapFileTamper
{
    public static void FlipByte(string path, long offset)
    {
        using var h = OpenRaw(path);
        Span<byte> b = stackalloc byte[1];
        RandomAccess.Read(h, b, offset);
        b[0] ^= 0x10;
        RandomAccess.Write(h, (ReadOnlySpan<byte>)b, offset);
    }

    public static void Truncate(string path, long length = 0)
    {
        if (TruncateFile(path, length) != 0) throw new IOException($"truncate {path} failed: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>Copies <paramref name="count"/> bytes from one offset of the file to another (one swap slot over another).</summary>
    public static void Copy(string path, long from, long to, int count)
    {
        using var h = OpenRaw(path);
        var b = new byte[count];
        RandomAccess.Read(h, b, from);
        RandomAccess.Write(h, (ReadOnlySpan<byte>)b, to);
    }

    /// <summary>Exchanges <paramref name="count"/> bytes at two offsets of the file (two swap slots trade places).</summary>
    public static void Exchange(string path, long first, long second, int count)
    {
        using var h = OpenRaw(path);
        var x = new byte[count];
        var y = new byte[count];
        RandomAccess.Read(h, x, first);
        RandomAccess.Read(h, y, second);
        RandomAccess.Write(h, (ReadOnlySpan<byte>)y, first);
        RandomAccess.Write(h, (ReadOnlySpan<byte>)x, second);
    }

    private static SafeFileHandle OpenRaw(string path)
    {
        int fd = Open(path, 2 /* O_RDWR */);
        if (fd < 0) throw new IOException($"open {path} failed: errno {Marshal.GetLastPInvokeError()}");
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "truncate", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int TruncateFile(string path, long length);
}
