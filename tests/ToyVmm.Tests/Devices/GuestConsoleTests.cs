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
    public void Write_BrokenOutput_DoesNotThrow()
    {
        var console = new GuestConsole(new BrokenStream());
        console.Write((byte)'x');
        console.Write((byte)'\n');
        console.Flush();
        Assert.Equal(2, console.BytesWritten);
    }

    private sealed class BrokenStream : MemoryStream
    {
        public override void Write(byte[] buffer, int offset, int count) => throw new IOException("broken pipe");
    }
}
