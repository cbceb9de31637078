using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using Xunit;

namespace ToyVmm.Mmu.Tests.Secondary.Contract;

/// <summary>The TLB shootdown (a vCPU holding a page is waited for, shot down from outside or not asked at all) and the checker catching what a broken shootdown leaves.</summary>
public abstract unsafe partial class SecondaryMmuContractTests
{
    [Fact]
    public void RemoveSlot_VcpuInGuestModeHoldingItsPage_WaitsForItsFlushAcknowledgement()
    {
        Make();
        var start = new Gpa(1UL << 30);
        _mmu.AddSlot(new MemorySlot(1, start, 4 * Page.Size, MapMore(4 * Page.Size)));
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, start, AccessKind.Write, out _));
        _vcpu.EnterGuest();
        var remove = new Thread(() => _mmu.RemoveSlot(1));
        remove.Start();
        Assert.False(remove.Join(TimeSpan.FromMilliseconds(100)));   // the vCPU may still use the page
        Assert.Equal(VcpuLink.FlushRequest, _vcpu.TakeRequests());
        _vcpu.AcknowledgeFlush();
        Assert.True(remove.Join(Patience));
        _vcpu.ExitGuest();
        Assert.Null(_mmu.Slots.Find(start));
        AssertNoViolation();
    }

    [Fact]
    public void Checker_FrameFreedWhileAnEntryMapsIt_IsReported()
    {
        Make();
        MmuViolation? seen = null;
        _checker.Violated += v => seen = v;
        Touch(9);
        Assert.True(Maps(Gpa.FromPageNumber(9), out var frame));
        _checker.OnFrameFree(frame);    // as a host that skipped the invalidation would
        Assert.Equal(1, _checker.ViolationCount);
        Assert.Equal("a host frame was freed while a secondary entry still maps it", seen!.Rule);
        Assert.Equal(Gpa.FromPageNumber(9), seen.Gpa);
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Invalidation_WithVcpuInGuestMode_WaitsForItsFlushAcknowledgement(HostKind host)
    {
        Make(host);
        Touch(4);
        _vcpu.EnterGuest();
        var pageOut = new Thread(() => _manager.PageOut(new Gpa(0x4000), 4096));
        pageOut.Start();
        // The vCPU is "running guest code" and has not looked at its requests.
        Assert.False(pageOut.Join(TimeSpan.FromMilliseconds(100)));
        Assert.True(_vcpu.HasRequests);
        Assert.Equal(VcpuLink.FlushRequest, _vcpu.TakeRequests());
        _vcpu.AcknowledgeFlush();
        Assert.True(pageOut.Join(Patience));
        _vcpu.ExitGuest();
        Assert.False(Maps(new Gpa(0x4000), out _));
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Invalidation_AsksOnlyTheVcpusThatMayHoldThePage(HostKind host)
    {
        Make(host);
        var other = new VcpuLink(1);
        _mmu.AttachVcpu(other);
        _checker.WatchVcpus(() => [_vcpu, other]);
        Touch(4);
        other.EnterGuest();     // running guest code, never acknowledging
        Assert.Equal(1, _manager.PageOut(new Gpa(0x4000), 4096));
        Assert.False(other.HasRequests, "vCPU 1 never cached the page and is not asked to flush");
        Assert.True(_vcpu.HasRequests);
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(other, new Gpa(0x4000), AccessKind.Read, out _));
        var pageOut = new Thread(() => _manager.PageOut(new Gpa(0x4000), 4096));
        pageOut.Start();
        Assert.False(pageOut.Join(TimeSpan.FromMilliseconds(100)));   // now it holds it: the zap waits for it
        other.TakeRequests(); other.AcknowledgeFlush();
        Assert.True(pageOut.Join(Patience));
        other.ExitGuest();
        AssertNoViolation();
    }

    /// <summary>The vCPU with a scripted TLB, holding guest page 4 and in guest mode.</summary>
    private ScriptedTlb RunningVcpuHoldingPage4(HostKind host)
    {
        Make(host);
        var tlb = new ScriptedTlb();
        _vcpu.AttachTlb(tlb);
        Touch(4);
        _vcpu.EnterGuest();
        return tlb;
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Invalidation_VcpuWhoseTlbCannotHoldThePage_IsDoneWithoutIt(HostKind host)
    {
        var tlb = RunningVcpuHoldingPage4(host);   // running guest code, never acknowledging
        tlb.Holds = false;
        Assert.Equal(1, _manager.PageOut(new Gpa(0x4000), 4096));
        Assert.Empty(tlb.ShotDown);
        Assert.Equal(_vcpu.PostedGeneration, _vcpu.RemoteGeneration);
        AssertNoViolation();
    }

    /// <summary>Page 4 paged out: its flush was completed from outside (shot down), never acknowledged by the vCPU.</summary>
    private void PageOutPage4_ShotDownFromOutside(ScriptedTlb tlb)
    {
        Assert.Equal(1, _manager.PageOut(new Gpa(0x4000), 4096));
        Assert.Equal([(4UL, 4UL)], tlb.ShotDown);
        Assert.Equal(0, _vcpu.FlushedGeneration);
        Assert.Equal(_vcpu.PostedGeneration, _vcpu.RemoteGeneration);
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Invalidation_QuiescentVcpu_IsShotDownFromOutside(HostKind host)
    {
        var tlb = RunningVcpuHoldingPage4(host);
        tlb.Quiescent = true;
        PageOutPage4_ShotDownFromOutside(tlb);
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Invalidation_StalledQuiescentVcpu_IsShotDownFromOutside(HostKind host)
    {
        var tlb = RunningVcpuHoldingPage4(host);
        tlb.ProgressValue = 42;   // never moves: descheduled, the spin for its acknowledgement ends early
        tlb.Quiescent = true;
        PageOutPage4_ShotDownFromOutside(tlb);
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Invalidation_StalledVcpuInsideAnAccess_IsWaitedForUntilItAcknowledges(HostKind host)
    {
        var tlb = RunningVcpuHoldingPage4(host);
        tlb.ProgressValue = 42;   // stalled is no answer: it may still hold a pointer into the page
        var pageOut = new Thread(() => _manager.PageOut(new Gpa(0x4000), 4096));
        pageOut.Start();
        Assert.False(pageOut.Join(TimeSpan.FromMilliseconds(100)));
        lock (tlb.ShotDown) Assert.Single(tlb.ShotDown);
        Assert.True(_vcpu.RemoteGeneration < _vcpu.PostedGeneration);
        _vcpu.TakeRequests();
        _vcpu.TakeFlushRanges(new (ulong, ulong)[VcpuLink.MaxPendingRanges]);
        _vcpu.AcknowledgeFlush();
        Assert.True(pageOut.Join(Patience));
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Invalidation_VcpuInsideAnAccess_WaitsForItsAcknowledgement(HostKind host)
    {
        var tlb = RunningVcpuHoldingPage4(host);
        var pageOut = new Thread(() => _manager.PageOut(new Gpa(0x4000), 4096));
        pageOut.Start();
        Assert.False(pageOut.Join(TimeSpan.FromMilliseconds(100)));
        lock (tlb.ShotDown) Assert.Single(tlb.ShotDown);   // shot down, but it may still hold a pointer
        _vcpu.TakeRequests();
        _vcpu.TakeFlushRanges(new (ulong, ulong)[VcpuLink.MaxPendingRanges]);
        _vcpu.AcknowledgeFlush();
        Assert.True(pageOut.Join(Patience));
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Checker_TlbThatStillMapsAFreedFrame_IsAViolation(HostKind host)
    {
        var tlb = RunningVcpuHoldingPage4(host);
        tlb.Quiescent = true;    // the protocol believes the shootdown...
        tlb.MapsAnswer = true;   // ...but the entry is still there
        _manager.PageOut(new Gpa(0x4000), 4096);
        Assert.Equal(1, _checker.ViolationCount);
        Assert.Contains("TLB still maps it", _checker.FirstViolation!.Rule);
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Checker_FrameFreedBeforeAVcpuFlushed_IsAViolation(HostKind host)
    {
        RunningVcpuHoldingPage4(host);
        // The host frees a frame that is still mapped for a vCPU that never flushed.
        Assert.True(Maps(new Gpa(0x4000), out var frame));
        _checker.OnZap(_binding, new ZappedEntry(new Gpa(0x4000), frame, EptEntry.VcpuBit(_vcpu.Index)));
        _vcpu.RequestFlush(4, 4);
        _checker.OnFrameFree(frame);
        Assert.Equal("a host frame was freed before vCPU 0 flushed its TLB", _checker.FirstViolation!.Rule);
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void DetachVcpu_IsNoLongerAskedToFlush(HostKind host)
    {
        Make(host);
        var writer = new VcpuLink(-1);   // untracked, like the VMM's guest-physical writer: asked on every zap
        _mmu.AttachVcpu(writer);
        Touch(4);
        _manager.PageOut(new Gpa(0x4000), 4096);
        Assert.True(writer.HasRequests);
        writer.TakeRequests();
        _mmu.DetachVcpu(writer);
        Touch(4);
        _manager.PageOut(new Gpa(0x4000), 4096);
        Assert.False(writer.HasRequests);
        AssertNoViolation();
    }
}
