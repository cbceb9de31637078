using ToyVmm.Mmu.Secondary;
using ToyVmm.Mmu.Secondary.Shadow;
using Xunit;

namespace ToyVmm.Mmu.Tests.Secondary;

/// <summary>
/// What the secondary MMU core (SecondaryMmuCore) does the same for every MMU built on it,
/// beyond the contract: the shootdown of a removed slot asks for that slot's guest frames
/// only, for the shadow MMU as for EPT, and a detached vCPU is never asked to flush.
/// </summary>
public sealed unsafe class SecondaryMmuCoreTests
{
    private const int RamPages = 16, SlotPages = 8;
    private static readonly Gpa SlotBase = Gpa.FromPageNumber(1024);

    public enum Kind { Ept, Shadow }

    public static TheoryData<Kind> Kinds => new() { Kind.Ept, Kind.Shadow };

    private static SecondaryMmuCore Create(Kind kind, TestHost host) => kind == Kind.Ept
        ? new EptMmu(host, RamPages * Page.Size, TestHost.RamBase)
        : new ShadowMmu(host, RamPages * Page.Size, TestHost.RamBase);

    [Theory]
    [MemberData(nameof(Kinds))]
    public void RemoveSlot_OfAMappedSecondSlot_AsksForTheSlotsFramesOnly(Kind kind)
    {
        using var host = new TestHost(64);
        using var mmu = Create(kind, host);
        var link = new VcpuLink(0);
        mmu.AttachVcpu(link);
        mmu.AddSlot(new MemorySlot(1, SlotBase, SlotPages * Page.Size, TestHost.RamBase.Add(1UL << 30)));
        Assert.Equal(TranslateStatus.Ok, mmu.Translate(link, SlotBase.Add(2 * Page.Size), AccessKind.Write, out _));
        link.TakeRequests();

        Assert.True(mmu.RemoveSlot(1));

        Assert.NotEqual(0, link.TakeRequests() & VcpuLink.FlushRequest);
        Span<(ulong First, ulong Last)> ranges = stackalloc (ulong, ulong)[VcpuLink.MaxPendingRanges];
        int n = link.TakeFlushRanges(ranges);
        Assert.True(n > 0, "a flush of the whole TLB where the slot's frames were enough");
        for (int i = 0; i < n; i++)
        {
            Assert.True(ranges[i].First >= SlotBase.PageNumber, $"range {ranges[i]} starts below the slot");
            Assert.True(ranges[i].Last < SlotBase.PageNumber + SlotPages, $"range {ranges[i]} ends past the slot");
        }
        Assert.Equal(TranslateStatus.Unbacked, mmu.Translate(link, SlotBase.Add(2 * Page.Size), AccessKind.Read, out _));
    }

    /// <summary>An MMU of <paramref name="kind"/> over <paramref name="host"/> with <paramref name="link"/> attached and guest page 3 mapped for it, its requests taken.</summary>
    private static SecondaryMmuCore MapPage3(Kind kind, TestHost host, VcpuLink link)
    {
        var mmu = Create(kind, host);
        mmu.AttachVcpu(link);
        Assert.Equal(TranslateStatus.Ok, mmu.Translate(link, Gpa.FromPageNumber(3), AccessKind.Write, out _));
        link.TakeRequests();
        return mmu;
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void DetachVcpu_ThenAnInvalidationOfItsPage_DoesNotAskIt(Kind kind)
    {
        using var host = new TestHost(64);
        var link = new VcpuLink(0);
        using var mmu = MapPage3(kind, host, link);
        mmu.DetachVcpu(link);

        host.Evict(TestHost.RamBase.Add(3 * Page.Size), Page.Size, keep: true);

        Assert.Equal(0, link.TakeRequests() & VcpuLink.FlushRequest);
        Assert.Equal(TranslateStatus.Ok, mmu.Translate(link, Gpa.FromPageNumber(3), AccessKind.Read, out _));   // faulted in again
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Invalidation_OfAMappedPage_AsksTheAttachedVcpuForThatFrame(Kind kind)
    {
        using var host = new TestHost(64);
        var link = new VcpuLink(0);
        using var mmu = MapPage3(kind, host, link);

        host.Evict(TestHost.RamBase.Add(3 * Page.Size), Page.Size, keep: true);

        Assert.NotEqual(0, link.TakeRequests() & VcpuLink.FlushRequest);
        Span<(ulong First, ulong Last)> ranges = stackalloc (ulong, ulong)[VcpuLink.MaxPendingRanges];
        Assert.Equal(1, link.TakeFlushRanges(ranges));
        Assert.Equal((3UL, 3UL), ranges[0]);
    }
}
