using ToyVmm.Mmu.Host;
using Xunit;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Host;

/// <summary>
/// The swap file holds guest memory: it is always created new (never an existing
/// file), private (0600), locked against a second user, and leaves nothing behind.
/// </summary>
public sealed class SwapFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("toyvmm-swapfile-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Page a few written pages out and back, so the file is really used.</summary>
    private static void UseSwap(HostMemory host)
    {
        var mm = host.CreateAddressSpace();
        var a = mm.Map(8 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 8; i++) WritePage(mm, a.Add(i * Page.Size), 3, i + 1);
        Assert.Equal(8, mm.PageOut(a, 8 * Page.Size).Written);
        for (ulong i = 0; i < 8; i++) AssertPage(mm, a.Add(i * Page.Size), 3, i + 1, "after swap-in");
    }

    [Fact]
    public void Temporary_UnlinkedRightAfterOpen_StillWorks()
    {
        using var host = NewHost(frames: 64);
        Assert.True(host.Swap.IsTemporary);
        // Nothing to leave behind even if the process is killed: the name is gone already.
        Assert.False(File.Exists(host.Swap.FilePath));
        UseSwap(host);
    }

    [Fact]
    public void Named_CreatedWithMode0600_DeletedOnDispose()
    {
        string path = Path.Combine(_dir, "s.swap");
        using (var host = NewHost(frames: 64, swapPath: path))
        {
            Assert.False(host.Swap.IsTemporary);
            Assert.True(File.Exists(path));
            if (!OperatingSystem.IsWindows())
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            UseSwap(host);
        }
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Named_ExistingFile_RefusedAndLeftUntouched()
    {
        string path = Path.Combine(_dir, "guest.elf");
        byte[] contents = [0x7f, (byte)'E', (byte)'L', (byte)'F', 1, 2, 3];
        File.WriteAllBytes(path, contents);
        var e = Assert.Throws<SwapFileException>(() => NewHost(frames: 64, swapPath: path));
        Assert.Contains(path, e.Message);
        Assert.Contains("already exists", e.Message);
        Assert.Equal(contents, File.ReadAllBytes(path));
    }

    [Fact]
    public void Named_SecondHostOnTheSameFile_RefusedFirstKeepsWorking()
    {
        string path = Path.Combine(_dir, "shared.swap");
        using var first = NewHost(frames: 64, swapPath: path);
        var e = Assert.Throws<SwapFileException>(() => NewHost(frames: 64, swapPath: path));
        Assert.Contains(path, e.Message);
        // The refused host must not delete the file the first one is using.
        Assert.True(File.Exists(path));
        UseSwap(first);
    }

    [Fact]
    public void Named_TruncatedWhileRunning_ReadFailsNamingTheTruncation()
    {
        string path = Path.Combine(_dir, "t.swap");
        using var host = NewHost(frames: 64, swapPath: path);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(4 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 4; i++) WritePage(mm, a.Add(i * Page.Size), 4, 1);
        Assert.Equal(4, mm.PageOut(a, 4 * Page.Size).Written);
        SwapFileTamper.Truncate(path);
        var e = Assert.Throws<HostMemoryException>(() => mm.ReadUInt64(a));
        Assert.Equal(HostFaultStatus.SwapReadError, e.Status);
        Assert.Contains("swap read failed: the swap file ends early", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void Named_MissingFolder_NamesPathAndReason()
    {
        string path = Path.Combine(_dir, "no-such-folder", "s.swap");
        var e = Assert.Throws<SwapFileException>(() => NewHost(frames: 64, swapPath: path));
        Assert.Equal($"cannot create the swap file {path}: the folder does not exist", e.Message);
    }

    [Fact]
    public void Named_Directory_SaysItIsADirectory()
    {
        var e = Assert.Throws<SwapFileException>(() => NewHost(frames: 64, swapPath: _dir));
        Assert.Equal($"cannot create the swap file {_dir}: it is a directory", e.Message);
    }
}
