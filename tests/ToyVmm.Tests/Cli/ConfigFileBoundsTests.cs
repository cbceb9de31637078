using System.Diagnostics;
using ToyVmm.Cli;
using Xunit;

namespace ToyVmm.Tests.Cli;

/// <summary>
/// <c>--config</c> names a file the VMM reads: a device that never ends, a FIFO nobody
/// writes or a huge file is refused in one line, never read for ever or blocked on.
/// </summary>
public class ConfigFileBoundsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("toyvmm-cfg-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private CommandLineResult Parse(params string[] args) =>
        CommandLine.Parse(args, new CliEnvironment(_dir, new Dictionary<string, string>()));

    [Fact]
    public void Parse_ConfigIsDevZero_RefusedAsNotARegularFile()
    {
        if (!File.Exists("/dev/zero")) return;
        var r = Parse("run", "g.elf", "--config", "/dev/zero");
        Assert.Equal("/dev/zero: is not a regular file (a pipe, FIFO, socket or device)", r.Error);
    }

    [Fact]
    public async Task Parse_ConfigIsAFifo_RefusedWithoutBlocking()
    {
        if (OperatingSystem.IsWindows()) return;
        string fifo = Path.Combine(_dir, "cfg.fifo");
        using (var mkfifo = Process.Start("mkfifo", [fifo])) mkfifo.WaitForExit();
        // Bounded: a parse that blocks in open() fails here instead of hanging the suite.
        var r = await Task.Run(() => Parse("run", "g.elf", "--config", fifo)).WaitAsync(TimeSpan.FromMinutes(1));
        Assert.Equal($"{fifo}: is not a regular file (a pipe, FIFO, socket or device)", r.Error);
    }

    [Fact]
    public void Parse_ConfigLargerThanTheBound_RefusedNamingTheBound()
    {
        string big = Path.Combine(_dir, "big.json");
        File.WriteAllText(big, "{\"memory\": \"64M\"" + new string(' ', RunConfiguration.MaxFileBytes) + "}");
        var r = Parse("run", "g.elf", "--config", big);
        Assert.Equal($"{big}: the file is larger than {RunConfiguration.MaxFileBytes / 1024} KiB, more than any configuration needs", r.Error);
    }

    [Fact]
    public void Parse_ConfigJustUnderTheBound_Read()
    {
        string file = Path.Combine(_dir, "ok.json");
        string body = "{\"memory\": \"128M\"}";
        File.WriteAllText(file, body + new string(' ', RunConfiguration.MaxFileBytes - body.Length));
        var r = Parse("run", "g.elf", "--config", file);
        Assert.Null(r.Error);
        Assert.Equal(128UL << 20, r.Options!.MemoryBytes);
    }
}
