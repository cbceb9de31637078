using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ToyVmm.Cli;

/// <summary>
/// Tells a guest file that is not a regular file (a directory, a FIFO, a pipe, a
/// socket, a character device) apart before the loader opens it: opening a FIFO
/// for reading blocks until a writer appears, so the check opens with O_NONBLOCK
/// and asks whether the file can seek, which only regular files (and block
/// devices, which the loader then rejects by size or contents) can.
/// </summary>
public static partial class GuestFileCheck
{
    /// <summary>Null when <paramref name="path"/> is a regular file (or cannot be opened: the loader says why); else why not.</summary>
    public static string? NotRegular(string path)
    {
        if (Directory.Exists(path)) return "is a directory, not a guest ELF file";
        if (OperatingSystem.IsWindows()) return null;
        int flags = OperatingSystem.IsMacOS() ? 0x4 | 0x1000000 : 0x800 | 0x80000;   // O_RDONLY | O_NONBLOCK | O_CLOEXEC
        int fd = Open(path, flags);
        if (fd < 0) return null;
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            using var stream = new FileStream(handle, FileAccess.Read, bufferSize: 0);
            return stream.CanSeek ? null : "is not a regular file (a pipe, FIFO, socket or character device), not a guest ELF file";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);
}
