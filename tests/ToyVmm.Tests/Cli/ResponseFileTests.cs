using ToyVmm.Cli;
using Xunit;

namespace ToyVmm.Tests.Cli;

/// <summary>
/// An argument that starts with @ is an argument, not a response file to read more
/// arguments from: "@." (a folder) threw, "@/dev/zero" would be read for ever, and a
/// guest named @g.elf was never run.
/// </summary>
public class ResponseFileTests
{
    private static readonly CliEnvironment Empty = new(Path.GetTempPath(), new Dictionary<string, string>());

    [Fact]
    public void Parse_AtFolder_OneLineUsageError()
    {
        var r = CommandLine.Parse(["@."], Empty);
        Assert.Equal("unknown command '@.'", r.Error);
    }

    [Fact]
    public async Task Parse_GuestAtDevZero_IsTheGuestNotAFileOfArguments()
    {
        // Bounded: reading /dev/zero as arguments would never end.
        var r = await Task.Run(() => CommandLine.Parse(["run", "@/dev/zero"], Empty)).WaitAsync(TimeSpan.FromMinutes(1));
        Assert.Equal("@/dev/zero", r.Options!.GuestPath);
    }

    [Fact]
    public void Parse_GuestNamedWithAt_IsTheGuest()
    {
        // A file of that name exists (response files are read relative to the working
        // folder), holding what would be arguments: it is still only the guest's name.
        string name = $"@toyvmm-at-{Guid.NewGuid():N}.elf";
        string path = Path.Combine(Directory.GetCurrentDirectory(), name);
        File.WriteAllText(path, "--vcpus\n7\n");
        try
        {
            var r = CommandLine.Parse(["run", name], Empty);
            Assert.Null(r.Error);
            Assert.Equal(name, r.Options!.GuestPath);
            Assert.Equal(1, r.Options.Vcpus);
        }
        finally { File.Delete(path); }
    }
}
