using Xunit;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Tests.Secondary;

/// <summary>
/// Flush generations on <see cref="VcpuLink"/> and the shootdown steps of
/// EptMmu.FlushVcpusLocked against a scripted <see cref="IVcpuTlb"/>: filter,
/// remote shootdown of a quiescent vCPU, and the wait for one inside an access.
/// </summary>
public sealed unsafe class TlbShootdownTests
{
    private const ulong Ram = 64 * 4096;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    /// <summary>A TLB whose answers the test sets; records what the invalidator did to it.</summary>
    private sealed class ScriptedTlb : IVcpuTlb
    {
        public volatile bool Holds = true, Quiescent, MapsAnswer;
        public readonly List<(ulong, ulong)> ShotDown = new();
        public bool MayHold(ulong firstGfn, ulong lastGfn) => Holds;
        public void ShootDown(ulong firstGfn, ulong lastGfn) { lock (ShotDown) ShotDown.Add((firstGfn, lastGfn)); }
        public bool IsQuiescent => Quiescent;
        public bool Maps(ulong gfn, nint hostPage) => MapsAnswer;
    }

    /// <summary>PAGEOUT/DISCARD of the MMU made by <see cref="Make"/>, straight to its host.</summary>
    private GuestMemoryManager _manager = null!;

    private (TestHost host, EptMmu mmu, MmuInvariantChecker checker, VcpuLink vcpu, ScriptedTlb tlb) Make()
    {
        var checker = new MmuInvariantChecker();
        var host = new TestHost(256) { FrameFreed = checker.OnFrameFree };
        var mmu = new EptMmu(host, Ram, TestHost.RamBase) { Checker = checker };
        var vcpu = new VcpuLink(0);
        var tlb = new ScriptedTlb();
        vcpu.AttachTlb(tlb);
        mmu.AttachVcpu(vcpu);
        checker.WatchVcpus(() => [vcpu]);
        _manager = new GuestMemoryManager(host, mmu);
        return (host, mmu, checker, vcpu, tlb);
    }

    [Fact]
    public void AcknowledgeFlush_OfEarlierRanges_DoesNotAnswerALaterPost()
    {
        var link = new VcpuLink(0);
        link.EnterGuest();
        long first = link.RequestFlush(5, 5);
        Assert.Equal(VcpuLink.FlushRequest, link.TakeRequests());
        var ranges = new (ulong, ulong)[VcpuLink.MaxPendingRanges];
        Assert.Equal(1, link.TakeFlushRanges(ranges));
        Assert.Equal((5UL, 5UL), ranges[0]);
        long second = link.RequestFlush(9, 10);   // posted while the vCPU flushes the first
        link.AcknowledgeFlush();
        Assert.True(link.IsFlushed(first));
        Assert.False(link.IsFlushed(second));
        Assert.Equal(VcpuLink.FlushRequest, link.TakeRequests());
        Assert.Equal(1, link.TakeFlushRanges(ranges));
        Assert.Equal((9UL, 10UL), ranges[0]);
        link.AcknowledgeFlush();
        Assert.True(link.IsFlushed(second));
    }

    [Fact]
    public void RequestFlush_MoreRangesThanKept_OrTheWholeSpace_TakesTheWholeTlb()
    {
        var link = new VcpuLink(0);
        link.EnterGuest();
        var ranges = new (ulong, ulong)[VcpuLink.MaxPendingRanges];
        for (ulong g = 0; g <= VcpuLink.MaxPendingRanges; g++) link.RequestFlush(g, g);
        Assert.Equal(-1, link.TakeFlushRanges(ranges));
        link.RequestFlush(3, 3);
        link.RequestFlush();
        Assert.Equal(-1, link.TakeFlushRanges(ranges));
        link.RequestFlush(3, 4);
        Assert.Equal(1, link.TakeFlushRanges(ranges));   // taking empties the list
    }

    [Fact]
    public void RequestFlush_OutsideGuestMode_NeedsNoWait_AndIsTakenOnEntry()
    {
        var link = new VcpuLink(0);
        Assert.Equal(-1, link.RequestFlush(7, 7));
        link.EnterGuest();
        Assert.Equal(VcpuLink.FlushRequest, link.TakeRequests());
        var ranges = new (ulong, ulong)[VcpuLink.MaxPendingRanges];
        Assert.Equal(1, link.TakeFlushRanges(ranges));
        Assert.Equal((7UL, 7UL), ranges[0]);
    }

    [Fact]
    public void DetachTlb_WaitsForPinnedUsers_AndLaterPinsSeeNone()
    {
        var link = new VcpuLink(0);
        link.AttachTlb(new ScriptedTlb());
        Assert.NotNull(link.PinTlb());
        var detach = new Thread(link.DetachTlb);
        detach.Start();
        Assert.False(detach.Join(TimeSpan.FromMilliseconds(100)));
        link.UnpinTlb();
        Assert.True(detach.Join(Patience));
        Assert.Null(link.PinTlb());
    }

    [Fact]
    public void Invalidation_VcpuWhoseTlbCannotHoldThePage_IsDoneWithoutIt()
    {
        var (host, mmu, checker, vcpu, tlb) = Make();
        mmu.Translate(vcpu, new Gpa(0x4000), AccessKind.Write, out _);
        vcpu.EnterGuest();       // running guest code, never acknowledging
        tlb.Holds = false;
        Assert.Equal(1, _manager.PageOut(new Gpa(0x4000), 4096));
        Assert.Empty(tlb.ShotDown);
        Assert.Equal(vcpu.PostedGeneration, vcpu.RemoteGeneration);
        Assert.Equal(0, checker.ViolationCount);
        host.Dispose();
    }

    [Fact]
    public void Invalidation_QuiescentVcpu_IsShotDownFromOutside()
    {
        var (host, mmu, checker, vcpu, tlb) = Make();
        mmu.Translate(vcpu, new Gpa(0x4000), AccessKind.Write, out _);
        vcpu.EnterGuest();
        tlb.Quiescent = true;
        Assert.Equal(1, _manager.PageOut(new Gpa(0x4000), 4096));
        Assert.Equal([(4UL, 4UL)], tlb.ShotDown);
        Assert.Equal(0, vcpu.FlushedGeneration);
        Assert.Equal(vcpu.PostedGeneration, vcpu.RemoteGeneration);
        Assert.Equal(0, checker.ViolationCount);
        host.Dispose();
    }

    [Fact]
    public void Invalidation_VcpuInsideAnAccess_WaitsForItsAcknowledgement()
    {
        var (host, mmu, checker, vcpu, tlb) = Make();
        mmu.Translate(vcpu, new Gpa(0x4000), AccessKind.Write, out _);
        vcpu.EnterGuest();
        var pageOut = new Thread(() => _manager.PageOut(new Gpa(0x4000), 4096));
        pageOut.Start();
        Assert.False(pageOut.Join(TimeSpan.FromMilliseconds(100)));
        lock (tlb.ShotDown) Assert.Single(tlb.ShotDown);   // shot down, but it may still hold a pointer
        vcpu.TakeRequests();
        vcpu.TakeFlushRanges(new (ulong, ulong)[VcpuLink.MaxPendingRanges]);
        vcpu.AcknowledgeFlush();
        Assert.True(pageOut.Join(Patience));
        Assert.Equal(0, checker.ViolationCount);
        host.Dispose();
    }

    [Fact]
    public void Checker_TlbThatStillMapsAFreedFrame_IsAViolation()
    {
        var (host, mmu, checker, vcpu, tlb) = Make();
        mmu.Translate(vcpu, new Gpa(0x4000), AccessKind.Write, out _);
        vcpu.EnterGuest();
        tlb.Quiescent = true;    // the protocol believes the shootdown...
        tlb.MapsAnswer = true;   // ...but the entry is still there
        _manager.PageOut(new Gpa(0x4000), 4096);
        Assert.Equal(1, checker.ViolationCount);
        Assert.Contains("TLB still maps it", checker.FirstViolation!.Rule);
        host.Dispose();
    }

    [Fact]
    public void Checker_FrameFreedBeforeAVcpuFlushed_IsAViolation()
    {
        var (host, mmu, checker, vcpu, tlb) = Make();
        mmu.Translate(vcpu, new Gpa(0x4000), AccessKind.Write, out _);
        vcpu.EnterGuest();
        // The host frees a frame that is still mapped for a vCPU that never flushed.
        var zapped = new EptEntry(mmu.Table.Lookup(4).Raw);
        checker.OnZap(mmu.Host, new ZappedEntry(new Gpa(0x4000), zapped.Frame, zapped.Vcpus));
        vcpu.RequestFlush(4, 4);
        checker.OnFrameFree(zapped.Frame);
        Assert.Equal("a host frame was freed before vCPU 0 flushed its TLB", checker.FirstViolation!.Rule);
        host.Dispose();
    }

    [Fact]
    public void DetachVcpu_IsNoLongerAskedToFlush()
    {
        var (host, mmu, checker, vcpu, tlb) = Make();
        var writer = new VcpuLink(-1);   // untracked, like the VMM's guest-physical writer: asked on every zap
        mmu.AttachVcpu(writer);
        mmu.Translate(vcpu, new Gpa(0x4000), AccessKind.Write, out _);
        _manager.PageOut(new Gpa(0x4000), 4096);
        Assert.True(writer.HasRequests);
        writer.TakeRequests();
        mmu.DetachVcpu(writer);
        mmu.Translate(vcpu, new Gpa(0x4000), AccessKind.Write, out _);
        _manager.PageOut(new Gpa(0x4000), 4096);
        Assert.False(writer.HasRequests);
        Assert.Equal(0, checker.ViolationCount);
        host.Dispose();
    }
}
