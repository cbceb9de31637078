using System.Runtime.CompilerServices;
using ToyVmm.Mmu.Host;
using Xunit;

namespace ToyVmm.Mmu.Tests.Host;

public class FrameMetaTests
{
    [Fact]
    public void FrameMeta_Size_Is32Bytes()
    {
        Assert.Equal(32, Unsafe.SizeOf<FrameMeta>());
        Assert.Equal(32, FramePool.MetadataBytesPerFrame);
    }

    [Fact]
    public void Pte_Size_Is8Bytes() => Assert.Equal(8, Unsafe.SizeOf<Pte>());

    [Fact]
    public void Pte_PresentAndSwap_RoundTrip()
    {
        var p = Pte.Present(0x12345, writable: true, accessed: false, dirty: true);
        Assert.True(p.IsPresent);
        Assert.False(p.IsSwap);
        Assert.Equal(0x12345u, p.Frame);
        Assert.True(p.Writable && p.Dirty && !p.Accessed);
        var s = Pte.Swap(0xABCDEF);
        Assert.True(s.IsSwap);
        Assert.False(s.IsPresent);
        Assert.Equal(0xABCDEFu, s.SwapSlot);
        Assert.True(Pte.None.IsNone && !Pte.None.IsSwap && !Pte.None.IsPresent);
    }

    [Fact]
    public void Owner_Encoding_RoundTrips()
    {
        ulong o = FrameMeta.MakeOwner(77, 0xF_FFFF_FFFF);
        Assert.Equal(77, FrameMeta.OwnerSpace(o));
        Assert.Equal(0xF_FFFF_FFFFUL, FrameMeta.OwnerVpn(o));
    }
}
