using System.Text;
using ToyVmm.Devices;
using Xunit;

namespace ToyVmm.Tests.Devices;

public class GuestConsoleTests
{
    [Fact]
    public void Write_FlushesAtNewlineOnly()
    {
        var output = new MemoryStream();
        var console = new GuestConsole(output);
        foreach (byte b in "ab"u8) console.Write(b);
        Assert.Equal(0, output.Length);
        console.Write((byte)'\n');
        Assert.Equal("ab\n", Encoding.ASCII.GetString(output.ToArray()));
        console.Write((byte)'c');
        console.Flush();
        Assert.Equal("ab\nc", Encoding.ASCII.GetString(output.ToArray()));
        Assert.Equal(4, console.BytesWritten);
    }

    [Fact]
    public void Write_LongLine_FlushesWhenBufferFills()
    {
        var output = new MemoryStream();
        var console = new GuestConsole(output);
        for (int i = 0; i < 5000; i++) console.Write((byte)'x');
        Assert.Equal(4096, output.Length);
    }

    [Fact]
    public void Write_ClosedPipe_DoesNotThrowReportsPipeClosedOnce()
    {
        var console = new GuestConsole(new BrokenStream(new IOException("Broken pipe", 32)));
        var seen = new List<ConsoleFailure>();
        console.Failed += seen.Add;
        console.Write((byte)'x');
        console.Write((byte)'\n');
        console.Write((byte)'y');
        console.Write((byte)'\n');
        console.Flush();
        Assert.Equal(4, console.BytesWritten);
        var f = Assert.Single(seen);
        Assert.True(f.PipeClosed);
        Assert.Same(f, console.Failure);
    }

    [Fact]
    public void Write_FullDisk_ReportsTheReason()
    {
        var console = new GuestConsole(new BrokenStream(new IOException("No space left on device : '/dev/full'", 28)));
        ConsoleFailure? seen = null;
        console.Failed += f => seen = f;
        console.Write((byte)'x');
        Assert.Null(seen);
        console.Flush();
        Assert.NotNull(seen);
        Assert.False(seen!.PipeClosed);
        Assert.Equal(new ConsoleFailure(false, "No space left on device"), console.Failure);
    }

    [Fact]
    public void Write_WorkingOutput_NoFailure()
    {
        var console = new GuestConsole(new MemoryStream());
        console.Failed += _ => Assert.Fail("no failure expected");
        console.Write((byte)'\n');
        Assert.Null(console.Failure);
    }

    private sealed class BrokenStream(IOException error) : MemoryStream
    {
        public override void Write(byte[] buffer, int offset, int count) => throw error;
    }
}
