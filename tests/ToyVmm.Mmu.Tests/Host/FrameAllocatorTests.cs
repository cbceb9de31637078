using ToyVmm.Mmu.Host;
using Xunit;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Host;

public class FrameAllocatorTests
{
    [Fact]
    public void Allocate_AfterFree_FrameIsZeroed()
    {
        using var host = NewHost(frames: 128, swapPages: 0);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(64 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 64; i++) WritePage(mm, a.Add(i * Page.Size), 1, 1);
        int freeBefore = host.FreeFrames;
        mm.DontNeed(a, 64 * Page.Size);
        Assert.Equal(freeBefore + 64, host.FreeFrames);
        // The freed frames are handed out again (the free list is a stack): every byte reads zero.
        var buf = new byte[Page.Size];
        for (ulong i = 0; i < 64; i++)
        {
            mm.Read(a.Add(i * Page.Size), buf);
            Assert.True(buf.AsSpan().IndexOfAnyExcept((byte)0) < 0, $"page {i} reads zero after DontNeed");
        }
        AssertConsistent(host, "after refault");
    }

    [Fact]
    public void Allocate_NoSwapAllDirty_FailsWithOutOfMemory()
    {
        using var host = NewHost(frames: 64, swapPages: 0);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(128 * Page.Size, HostProtection.ReadWrite);
        HostFaultStatus status = HostFaultStatus.Ok;
        int i = 0;
        for (; i < 128; i++)
        {
            status = mm.Fault(a.Add((ulong)i * Page.Size), write: true);
            if (status != HostFaultStatus.Ok) break;
        }
        Assert.Equal(HostFaultStatus.OutOfMemory, status);
        Assert.Equal(64, i);   // every frame was used before it failed
        Assert.True(host.Stats.OutOfMemory > 0);
        var e = Assert.Throws<HostOutOfMemoryException>(() => mm.WriteUInt64(a.Add((ulong)i * Page.Size), 1));
        Assert.Contains("out of host memory", e.Message);
        AssertConsistent(host, "after OOM");
    }

    [Fact]
    public void Allocate_BelowMin_ReclaimsDirectly()
    {
        using var host = NewHost(frames: 128, min: 8, low: 16, high: 24);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(512 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 512; i++) WritePage(mm, a.Add(i * Page.Size), 2, i + 1);
        Assert.True(host.Stats.DirectReclaims > 0);
        Assert.True(host.Stats.PagesWrittenToSwap >= 512 - 128);
        for (ulong i = 0; i < 512; i++) AssertPage(mm, a.Add(i * Page.Size), 2, i + 1, "after direct reclaim");
        AssertConsistent(host, "after direct reclaim");
    }

    [Fact]
    public void ZeroBeforeReuse_AcrossAddressSpaces_NoByteLeaks()
    {
        const int seed = 3141;
        Console.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        using var host = NewHost(frames: 96);
        var a = host.CreateAddressSpace();
        var b = host.CreateAddressSpace();
        var ra = a.Map(400 * Page.Size, HostProtection.ReadWrite);
        var rb = b.Map(400 * Page.Size, HostProtection.ReadWrite);
        var marker = new byte[Page.Size];
        Array.Fill(marker, (byte)0xA5);
        var buf = new byte[Page.Size];
        for (int round = 0; round < 2000; round++)
        {
            ulong pa = (ulong)rng.Next(400), pb = (ulong)rng.Next(400);
            switch (rng.Next(4))
            {
                case 0: a.Write(ra.Add(pa * Page.Size), marker); break;
                case 1: a.DontNeed(ra.Add(pa * Page.Size), Page.Size); break;
                case 2: a.PageOut(ra.Add(pa * Page.Size), Page.Size); break;
                default:
                    // b never writes: every page it reads is zero, whatever a did with the frames before.
                    b.Read(rb.Add(pb * Page.Size), buf);
                    Assert.True(buf.AsSpan().IndexOfAnyExcept((byte)0) < 0, $"seed {seed} round {round}: space b sees a byte written by space a");
                    if (rng.Next(3) == 0) b.DontNeed(rb.Add(pb * Page.Size), Page.Size);
                    break;
            }
        }
        AssertConsistent(host, "after zero-before-reuse rounds");
    }
}
