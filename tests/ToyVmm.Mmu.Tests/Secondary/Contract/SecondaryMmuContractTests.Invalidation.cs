using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using Xunit;

namespace ToyVmm.Mmu.Tests.Secondary.Contract;

/// <summary>Every host event that changes PTEs zaps the secondary entries; page-out, discard, dirty hand-off, aging and slot changes.</summary>
public abstract unsafe partial class SecondaryMmuContractTests
{
    public enum HostEvent { Reclaim, PageOut, Discard, Unmap, Protect, Teardown }

    /// <summary>
    /// Every host operation that changes PTEs zaps the secondary entries first and
    /// asks the vCPU holding the page to flush before any frame of it is freed.
    /// </summary>
    [Theory]
    [InlineData(HostEvent.Reclaim)]
    [InlineData(HostEvent.PageOut)]
    [InlineData(HostEvent.Discard)]
    [InlineData(HostEvent.Unmap)]
    [InlineData(HostEvent.Protect)]
    [InlineData(HostEvent.Teardown)]
    public void Invalidation_EachHostEvent_ZapsTheEntryAndAsksTheHolderToFlushBeforeTheFree(HostEvent ev)
    {
        Make();
        for (int i = 0; i < 8; i++) Touch(i);
        Assert.True(Maps(Gpa.FromPageNumber(3), out _));
        int freed = 0, freedBeforeFlushRequest = 0;
        _host.FrameFreed = f =>
        {
            freed++;
            if (!_vcpu.HasRequests) freedBeforeFlushRequest++;
            _checker.OnFrameFree(f);
        };
        switch (ev)
        {
            case HostEvent.Reclaim: Assert.True(_host.ReclaimNow(RamPages, ignoreAccessed: true) > 0); break;
            case HostEvent.PageOut: Assert.Equal(8, _manager.PageOut(new Gpa(0), 8 * Page.Size)); break;
            case HostEvent.Discard: Assert.Equal(8, _manager.Discard(new Gpa(0), 8 * Page.Size)); break;
            case HostEvent.Unmap: _mm.Unmap(_ram, 8 * Page.Size); break;
            case HostEvent.Protect: _mm.Protect(_ram, 8 * Page.Size, HostProtection.Read); break;
            case HostEvent.Teardown: _mm.Dispose(); break;
        }
        Assert.False(Maps(Gpa.FromPageNumber(3), out _));
        Assert.True(_vcpu.HasRequests, "the holder of the zapped pages is asked to flush");
        if (ev is HostEvent.Protect) Assert.Equal(0, freed);   // protect frees nothing
        else Assert.True(freed > 0);
        Assert.Equal(0, freedBeforeFlushRequest);
        AssertNoViolation();
    }

    /// <summary>
    /// A one-page invalidation, start and end through the host's notifiers, allocates nothing once
    /// warm: an allocation that has to refill the thread's allocation context was seen to stall an
    /// invalidation for tens of microseconds (bench/RESULTS.md).
    /// </summary>
    [Fact]
    public void Invalidation_OnePageStartAndEnd_AllocatesNothing()
    {
        Make(bare: true);
        var range = new InvalidateRange(HvaOf(3), HvaOf(4), InvalidateEvent.Clear, MayBlock: true);
        long allocated = 0;
        for (int i = 0; i < 64; i++)
        {
            Touch(3);
            long before = GC.GetAllocatedBytesForCurrentThread();
            _mm.Notifiers.InvalidateRangeStart(range);
            _mm.Notifiers.InvalidateRangeEnd(range);
            if (i > 0) allocated += GC.GetAllocatedBytesForCurrentThread() - before;
        }
        Assert.Equal(0, allocated);
        Assert.False(Maps(Gpa.FromPageNumber(3), out _));
    }

    [Fact]
    public void Aging_ThroughTheNotifiers_ReportsClearsAndSetsAgainOnAccess()
    {
        Make();
        Touch(2, AccessKind.Read);
        Assert.True(_mm.Notifiers.TestYoung(HvaOf(2)));
        Assert.False(_mm.Notifiers.TestYoung(HvaOf(4)));        // never touched: no entry, not young
        Assert.True(_mm.Notifiers.ClearYoung(_ram, _ram.Add(Ram)));
        Assert.False(_mm.Notifiers.TestYoung(HvaOf(2)));
        Assert.False(_mm.Notifiers.ClearFlushYoung(_ram, _ram.Add(Ram)));
        Assert.True(Maps(Gpa.FromPageNumber(2), out _));   // aging does not zap
        Touch(2, AccessKind.Read);
        Assert.True(_mm.Notifiers.TestYoung(HvaOf(2)));
        Assert.True(_mm.Notifiers.ClearFlushYoung(HvaOf(2), HvaOf(3)));
        Assert.False(_mm.Notifiers.TestYoung(HvaOf(2)));
        AssertNoViolation();
    }

    [Fact]
    public void Slots_AddedAndRemovedWhileInUse_MapThenZapAndFlush()
    {
        Make();
        Touch(1);
        var hva = _mm.Map(4 * Page.Size, HostProtection.ReadWrite);
        var start = new Gpa(1UL << 30);
        _mmu.AddSlot(new MemorySlot(1, start, 4 * Page.Size, hva));
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, start.Add(Page.Size), AccessKind.Write, out byte* p));
        p[3] = 0x33;
        var buf = new byte[Page.Size];
        _mm.Read(hva.Add(Page.Size), buf);
        Assert.Equal(0x33, buf[3]);
        Assert.False(_vcpu.HasRequests);
        Assert.True(_mmu.RemoveSlot(1));
        Assert.True(_vcpu.HasRequests, "removing a slot flushes the vCPUs that held its pages");
        Assert.False(Maps(start.Add(Page.Size), out _));
        Assert.Equal(TranslateStatus.Unbacked, _mmu.Translate(_vcpu, start.Add(Page.Size), AccessKind.Read, out _));
        Assert.False(_mmu.RemoveSlot(1));
        Assert.True(Maps(Gpa.FromPageNumber(1), out _));   // the other slot is untouched
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void PageOut_ThenRead_KeepsContents_AndDiscardReadsZero(HostKind host)
    {
        Make(host);
        byte* p = Touch(5);
        p[7] = 0x5A;
        Assert.Equal(1, _manager.PageOut(new Gpa(0x5000), 4096));
        Assert.False(Maps(new Gpa(0x5000), out _));
        Assert.Equal(0x5A, Touch(5, AccessKind.Read)[7]);
        Assert.Equal(1, _manager.Discard(new Gpa(0x5000), 4096));
        Assert.Equal(0, Touch(5, AccessKind.Read)[7]);
        Assert.Equal(GuestRange.Invalid, _manager.PageOut(new Gpa(0x5001), 4096));
        Assert.Equal(GuestRange.Invalid, _manager.Discard(new Gpa(Ram - 4096), 8192));
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Zap_OfEntryWrittenThroughTheSecondaryMmu_HandsTheDirtyBitToTheHost(HostKind host)
    {
        Make(host);
        Touch(2, AccessKind.Read);
        Assert.False(Lookup(_mmu, new Gpa(0x2000))!.Value.Dirty);
        byte* p = Touch(2, AccessKind.Write);
        Assert.True(Lookup(_mmu, new Gpa(0x2000))!.Value.Dirty);
        p[0] = 1;
        _manager.PageOut(new Gpa(0x2000), 4096);
        Assert.Equal(1, Touch(2, AccessKind.Read)[0]);
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void AddSlot_WhileInvalidationInFlight_WaitsForItsEnd(HostKind host)
    {
        Make(host);
        var hva = MapMore(Page.Size);
        var range = new InvalidateRange(_ram, _ram.Add(4096), InvalidateEvent.Clear, true);
        _binding.Notifiers.InvalidateRangeStart(range);
        var add = new Thread(() => _mmu.AddSlot(new MemorySlot(1, new Gpa(1UL << 30), 4096, hva)));
        add.Start();
        if (SlotChangesWaitForHostInvalidations)
        {
            Assert.False(add.Join(TimeSpan.FromMilliseconds(100)));
            Assert.Null(_mmu.Slots.Find(new Gpa(1UL << 30)));
        }
        else Assert.True(add.Join(Patience));   // nothing of the MMU's own is in flight
        _binding.Notifiers.InvalidateRangeEnd(range);
        Assert.True(add.Join(Patience));
        Assert.NotNull(_mmu.Slots.Find(new Gpa(1UL << 30)));
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void RemoveSlot_ZapsItsEntries_AndLaterAccessIsUnbacked(HostKind host)
    {
        Make(host);
        var start = new Gpa(1UL << 30);
        _mmu.AddSlot(new MemorySlot(1, start, 4 * Page.Size, MapMore(4 * Page.Size)));
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, start.Add(Page.Size), AccessKind.Write, out _));
        Assert.True(Maps(start.Add(Page.Size), out _));
        Assert.True(_mmu.RemoveSlot(1));
        Assert.False(Maps(start.Add(Page.Size), out _));
        Assert.Equal(TranslateStatus.Unbacked, _mmu.Translate(_vcpu, start.Add(Page.Size), AccessKind.Read, out _));
        Assert.False(_mmu.RemoveSlot(1));
        AssertNoViolation();
    }
}
