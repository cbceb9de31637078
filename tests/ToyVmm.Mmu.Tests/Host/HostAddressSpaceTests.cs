using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Notifiers;
using Xunit;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Host;

public class HostAddressSpaceTests
{
    [Fact]
    public void Fault_UntouchedPage_ZeroFills()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(16 * Page.Size, HostProtection.ReadWrite);
        Assert.Equal(0UL, mm.ReadUInt64(a.Add(5 * Page.Size + 8)));
        Assert.Equal(1, host.Stats.ZeroFillFaults);
        var pte = mm.QueryPte(a.Add(5 * Page.Size));
        Assert.True(pte.IsPresent && pte.Accessed && !pte.Dirty && pte.Writable);
        mm.WriteUInt64(a.Add(5 * Page.Size + 8), 42);
        Assert.True(mm.QueryPte(a.Add(5 * Page.Size)).Dirty);
        Assert.Equal(42UL, mm.ReadUInt64(a.Add(5 * Page.Size + 8)));
        Assert.Equal(1, mm.ResidentPages);
    }

    [Fact]
    public void Fault_WriteToReadOnly_IsProtectionError()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(4 * Page.Size, HostProtection.Read);
        Assert.Equal(HostFaultStatus.Ok, mm.Fault(a, write: false));
        Assert.Equal(HostFaultStatus.Protection, mm.Fault(a, write: true));
        var e = Assert.Throws<HostMemoryException>(() => mm.WriteUInt64(a, 1));
        Assert.Equal(HostFaultStatus.Protection, e.Status);
    }

    [Fact]
    public void Fault_Unmapped_IsBadAddress()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        Assert.Equal(HostFaultStatus.BadAddress, mm.Fault(new Hva(0x1000), write: false));
        var a = mm.Map(4 * Page.Size, HostProtection.ReadWrite);
        Assert.Equal(HostFaultStatus.BadAddress, mm.Fault(a.Add(4 * Page.Size), write: false));
    }

    [Fact]
    public void MapFixed_Overlap_Throws()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        mm.MapFixed(new Hva(0x40_0000), 16 * Page.Size, HostProtection.ReadWrite);
        Assert.Throws<ArgumentException>(() => mm.MapFixed(new Hva(0x40_0000 + 15 * Page.Size), 2 * Page.Size, HostProtection.Read));
        Assert.Throws<ArgumentOutOfRangeException>(() => mm.MapFixed(new Hva(0x1001), Page.Size, HostProtection.Read));
        Assert.Throws<ArgumentOutOfRangeException>(() => mm.Map(100, HostProtection.Read));
    }

    [Fact]
    public void Unmap_Middle_SplitsVmaAndFreesFrames()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(8 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 8; i++) WritePage(mm, a.Add(i * Page.Size), 1, 1);
        int free = host.FreeFrames;
        Assert.Equal(2, mm.Unmap(a.Add(3 * Page.Size), 2 * Page.Size));
        Assert.Equal(free + 2, host.FreeFrames);
        Assert.Equal(2, mm.Mappings().Count);
        Assert.Equal(HostFaultStatus.BadAddress, mm.Fault(a.Add(3 * Page.Size), false));
        AssertPage(mm, a.Add(2 * Page.Size), 1, 1, "left part");
        AssertPage(mm, a.Add(5 * Page.Size), 1, 1, "right part");
        AssertConsistent(host, "after unmap");
    }

    [Fact]
    public void Protect_ReadOnly_BlocksWritesKeepsContents()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(8 * Page.Size, HostProtection.ReadWrite);
        WritePage(mm, a.Add(2 * Page.Size), 3, 7);
        Assert.Equal(1, mm.Protect(a, 4 * Page.Size, HostProtection.Read));
        Assert.False(mm.QueryPte(a.Add(2 * Page.Size)).Writable);
        Assert.Equal(HostFaultStatus.Protection, mm.Fault(a.Add(2 * Page.Size), write: true));
        Assert.Equal(HostFaultStatus.Ok, mm.Fault(a.Add(6 * Page.Size), write: true));
        AssertPage(mm, a.Add(2 * Page.Size), 3, 7, "read-only page");
        mm.Protect(a, 4 * Page.Size, HostProtection.ReadWrite);
        WritePage(mm, a.Add(2 * Page.Size), 3, 8);
        AssertPage(mm, a.Add(2 * Page.Size), 3, 8, "writable again");
        AssertConsistent(host, "after protect");
    }

    [Fact]
    public void GetUserPages_HoldsReference_PageOutSkipsBusyPage()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(4 * Page.Size, HostProtection.ReadWrite);
        Span<Hfn> frames = stackalloc Hfn[4];
        Assert.Equal(HostFaultStatus.Ok, mm.GetUserPages(a, 4, write: true, frames));
        var r = mm.PageOut(a, 4 * Page.Size);
        Assert.Equal(0, r.PagedOut);
        Assert.Equal(4, r.Skipped);
        for (int i = 0; i < 4; i++)
        {
            host.Frames.PageSpan(frames[i])[0] = (byte)(i + 1);
            host.ReleasePage(frames[i], PageRelease.Dirty);
        }
        r = mm.PageOut(a, 4 * Page.Size);
        Assert.Equal(4, r.Written);
        for (int i = 0; i < 4; i++)
        {
            var b = new byte[1];
            mm.Read(a.Add((ulong)i * Page.Size), b);
            Assert.Equal((byte)(i + 1), b[0]);
        }
        AssertConsistent(host, "after GUP release");
    }

    [Fact]
    public void Invalidation_EachOperation_NamesItsEventCauseAndRange()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var sub = new RecordingSubscriber();
        mm.Notifiers.Register(sub);
        var a = mm.Map(8 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 8; i++) WritePage(mm, a.Add(i * Page.Size), 1, 1);

        mm.DontNeed(a, Page.Size);
        mm.Protect(a.Add(Page.Size), Page.Size, HostProtection.Read);
        mm.PageOut(a.Add(2 * Page.Size), 2 * Page.Size);
        mm.Unmap(a.Add(6 * Page.Size), 2 * Page.Size);
        Assert.Equal(
            new[]
            {
                (a, a.Add(Page.Size), InvalidateEvent.Clear, true, InvalidateCause.Discard),
                (a.Add(Page.Size), a.Add(2 * Page.Size), InvalidateEvent.Protection, true, InvalidateCause.Protect),
                (a.Add(2 * Page.Size), a.Add(4 * Page.Size), InvalidateEvent.Clear, true, InvalidateCause.PageOut),
                (a.Add(6 * Page.Size), a.Add(8 * Page.Size), InvalidateEvent.Unmap, true, InvalidateCause.Unmap),
            },
            sub.Starts.Select(r => (r.Start, r.End, r.Event, r.MayBlock, r.Cause)));
        Assert.Equal(sub.Starts, sub.Ends);
        mm.Dispose();
        Assert.Equal(1, sub.Releases);
    }

    [Fact]
    public void Invalidation_FramesStillAllocatedUntilEnd()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(4 * Page.Size, HostProtection.ReadWrite);
        Span<Hfn> frames = stackalloc Hfn[4];
        Assert.Equal(HostFaultStatus.Ok, mm.GetUserPages(a, 4, write: true, frames));
        var held = frames.ToArray();
        foreach (var f in held) host.ReleasePage(f, PageRelease.Dirty);
        int freeAtEnd = -1;
        var sub = new EndProbe(() => freeAtEnd = host.FreeFrames);
        mm.Notifiers.Register(sub);
        int before = host.FreeFrames;
        mm.DontNeed(a, 4 * Page.Size);
        Assert.Equal(before, freeAtEnd);        // nothing was freed before the end callback
        Assert.Equal(before + 4, host.FreeFrames);
    }

    private sealed class EndProbe(Action onEnd) : IMmuNotifierSubscriber
    {
        public bool InvalidateRangeStart(in InvalidateRange range) => true;
        public void InvalidateRangeEnd(in InvalidateRange range) => onEnd();
    }

    [Fact]
    public void DontNeed_UnmappedRange_ThrowsClearError()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(4 * Page.Size, HostProtection.ReadWrite);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => mm.DontNeed(a, 8 * Page.Size));
        Assert.Contains("not wholly mapped", e.Message);
    }
}
