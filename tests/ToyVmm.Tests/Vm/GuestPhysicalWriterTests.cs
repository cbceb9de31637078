using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;
using Xunit;

namespace ToyVmm.Tests.Vm;

public class GuestPhysicalWriterTests
{
    [Fact]
    public void Write_AcrossPageBoundary_LandsAtGpa()
    {
        using var memory = new FlatGuestMemory(1UL << 20);
        using var w = new GuestPhysicalWriter(memory);
        var data = Enumerable.Range(0, 10000).Select(i => (byte)(i * 7)).ToArray();
        w.Write(new Gpa(0x1FFD), data);
        Assert.Equal(data, memory.Bytes(new Gpa(0x1FFD), data.Length).ToArray());
        var back = new byte[data.Length];
        w.Read(new Gpa(0x1FFD), back);
        Assert.Equal(data, back);
    }

    [Fact]
    public void Zero_ClearsOnlyTheRange()
    {
        using var memory = new FlatGuestMemory(1UL << 20);
        memory.Bytes(new Gpa(0), 0x4000).Fill(0xAA);
        using (var w = new GuestPhysicalWriter(memory)) w.Zero(new Gpa(0x0FFF), 0x2002);
        Assert.Equal(0xAA, memory.Bytes(new Gpa(0x0FFE), 1)[0]);
        Assert.All(memory.Bytes(new Gpa(0x0FFF), 0x2002).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(0xAA, memory.Bytes(new Gpa(0x3001), 1)[0]);
    }

    [Fact]
    public void Write_PastEndOfRam_Throws()
    {
        using var memory = new FlatGuestMemory(1UL << 20);
        using var w = new GuestPhysicalWriter(memory);
        Assert.Throws<ArgumentOutOfRangeException>(() => w.Write(new Gpa((1UL << 20) - 2), new byte[4]));
        Assert.Throws<ArgumentOutOfRangeException>(() => w.Zero(new Gpa(ulong.MaxValue), 2));
    }
}
