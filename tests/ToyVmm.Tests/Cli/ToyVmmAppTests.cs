using ToyVmm.Cli;
using ToyVmm.Tests.Loader;
using Xunit;

namespace ToyVmm.Tests.Cli;

/// <summary>The program's exit statuses for bad command lines and bad guests (run in-process).</summary>
public class ToyVmmAppTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("toyvmm-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string WriteFile(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static async Task<(int Code, string Messages, byte[] Console)> Run(params string[] args)
    {
        var messages = new StringWriter();
        var console = new MemoryStream();
        int code = await ToyVmmApp.RunAsync(args, console, messages);
        return (code, messages.ToString(), console.ToArray());
    }

    [Theory]
    [InlineData]
    [InlineData("walk")]
    [InlineData("run")]
    [InlineData("run", "x.elf", "--bogus")]
    [InlineData("run", "x.elf", "--memory", "lots")]
    [InlineData("run", "x.elf", "--vcpus")]
    public async Task RunAsync_BadSyntax_ExitsTwoWithUsage(params string[] args)
    {
        var (code, messages, console) = await Run(args);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains(CommandLine.Usage, messages);
        Assert.StartsWith("toyvmm: ", messages);
        Assert.Empty(console);
    }

    [Fact]
    public async Task RunAsync_MissingGuestFile_ExitsTwoNamingIt()
    {
        string path = Path.Combine(_dir, "absent.elf");
        var (code, messages, _) = await Run("run", path);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains($"guest file '{path}' does not exist", messages);
        Assert.Contains(CommandLine.Usage, messages);
    }

    [Theory]
    [InlineData("3M", "is outside 4M..64G")]
    [InlineData("128G", "is outside 4M..64G")]
    [InlineData("4100K", "is not a multiple of 1M")]
    public async Task RunAsync_BadMemory_ExitsTwo(string memory, string expected)
    {
        string guest = WriteFile("g.elf", ElfBuilder.Valid().Build());
        var (code, messages, _) = await Run("run", guest, "--memory", memory);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains(expected, messages);
    }

    [Theory]
    [InlineData("0", "must be at least 1")]
    [InlineData("16", "at most 15 vCPUs fit")]
    public async Task RunAsync_BadVcpuCount_ExitsTwo(string vcpus, string expected)
    {
        string guest = WriteFile("g.elf", ElfBuilder.Valid().Build());
        var (code, messages, _) = await Run("run", guest, "--vcpus", vcpus);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains(expected, messages);
    }

    [Fact]
    public async Task RunAsync_Help_ExitsZero()
    {
        var (code, messages, _) = await Run("--help");
        Assert.Equal(0, code);
        Assert.Contains("--memory SIZE", messages);
    }

    [Fact]
    public async Task RunAsync_RefusedElf_ExitsThree()
    {
        var b = ElfBuilder.Valid();
        b.Type = 3;
        string guest = WriteFile("pie.elf", b.Build());
        var (code, _, console) = await Run("run", guest);
        Assert.Equal(ExitCodes.BadGuestFile, code);
        Assert.Empty(console);
    }

    [Fact]
    public async Task RunAsync_SegmentInReservedTopOfSmallRam_ExitsThree()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs[1].Paddr = b.Phdrs[1].Vaddr = 0x380000;   // fine with 64M, in the reserved top with 4M
        string guest = WriteFile("big.elf", b.Build());
        var (code, _, _) = await Run("run", guest, "--memory", "4M");
        Assert.Equal(ExitCodes.BadGuestFile, code);
    }

    [Fact]
    public async Task RunAsync_MoreRamThanTheHostHas_ExitsFive()
    {
        ulong host = (ulong)GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        Assert.True(host < RunOptions.MaxMemoryBytes, $"this test needs a host with less than 64 GiB (it has {host} bytes)");
        string guest = WriteFile("g.elf", ElfBuilder.Valid().Build());
        var (code, _, console) = await Run("run", guest, "--memory", "64G");
        Assert.Equal(ExitCodes.HostOutOfMemory, code);
        Assert.Empty(console);
    }
}
