using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using Xunit;

namespace ToyVmm.Mmu.Tests.Secondary.Contract;

/// <summary>Translation for each access kind and protection, and the fault kinds the host answers with.</summary>
public abstract unsafe partial class SecondaryMmuContractTests
{
    [Theory]
    [InlineData(AccessKind.Read)]
    [InlineData(AccessKind.Write)]
    [InlineData(AccessKind.Fetch)]
    public void Translate_EachAccessKind_MapsThePageTheHostBacks(AccessKind kind)
    {
        Make();
        byte* p = Touch(5, kind);
        Assert.True(Maps(Gpa.FromPageNumber(5), out var frame));
        Assert.True(_mm.FrameBacks(frame, HvaOf(5)));
        Assert.True(p == _binding.FrameAddress(frame));
        AssertNoViolation();
    }

    /// <summary>
    /// A secondary fault on a page the host holds (after its entry was zapped), and a zero-fill
    /// fault on a page the host gave back, allocate nothing once warm (at most
    /// <see cref="FaultAllocationBound"/>): the vCPU thread's allocation context would otherwise
    /// run out now and then in the middle of a fault. The page is alone in its 512-frame block,
    /// so a structure kept per block and dropped with its last entry is dropped every time.
    /// </summary>
    [Fact]
    public void Fault_PresentAndZeroFill_AllocateNothing()
    {
        Make(bare: true);
        var range = new InvalidateRange(HvaOf(3), HvaOf(4), InvalidateEvent.Clear, MayBlock: true);
        var gpa = Gpa.FromPageNumber(3);
        long present = 0, zeroFill = 0;
        int failed = 0, measured = 0;
        for (int i = 0; i < 64; i++)
        {
            _mm.Notifiers.InvalidateRangeStart(range);   // zap the entry; the host keeps the page
            _mm.Notifiers.InvalidateRangeEnd(range);
            long before = GC.GetAllocatedBytesForCurrentThread();
            if (_mmu.Translate(_vcpu, gpa, AccessKind.Write, out _) != TranslateStatus.Ok) failed++;
            if (i > 0) present += GC.GetAllocatedBytesForCurrentThread() - before;
            Evict(gpa);                                  // the host drops the page: the next touch zero-fills
            before = GC.GetAllocatedBytesForCurrentThread();
            if (_mmu.Translate(_vcpu, gpa, AccessKind.Write, out _) != TranslateStatus.Ok) failed++;
            if (i > 0) { zeroFill += GC.GetAllocatedBytesForCurrentThread() - before; measured++; }
        }
        Assert.Equal(0, failed);
        Assert.True(present <= (long)FaultAllocationBound * measured, $"present-page faults allocated {present} bytes over {measured}");
        Assert.True(zeroFill <= (long)FaultAllocationBound * measured, $"zero-fill faults allocated {zeroFill} bytes over {measured}");
    }

    [Fact]
    public void Translate_WriteThenHostRead_SeesTheGuestWrite()
    {
        Make();
        Touch(7)[9] = 0x6B;
        var buf = new byte[Page.Size];
        _mm.Read(HvaOf(7), buf);
        Assert.Equal(0x6B, buf[9]);
    }

    [Fact]
    public void Translate_ReadOnlySlot_ReadsButRefusesWrites()
    {
        Make();
        var hva = _mm.Map(4 * Page.Size, HostProtection.ReadWrite);
        var start = new Gpa(1UL << 30);
        _mmu.AddSlot(new MemorySlot(1, start, 4 * Page.Size, hva, ReadOnly: true));
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, start, AccessKind.Read, out _));
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, start, AccessKind.Fetch, out _));
        Assert.Equal(TranslateStatus.Protection, _mmu.Translate(_vcpu, start, AccessKind.Write, out _));
        AssertNoViolation();
    }

    [Fact]
    public void Fault_EachHostAnswer_KeepsContentsAndIsClassifiedByKind()
    {
        Make();
        long Faults(FaultKind k) => _hub.Snapshot().Total.Faults[k].TotalCount;
        Touch(0)[1] = 0x11;
        Assert.Equal(1, Faults(FaultKind.ZeroFill));

        // Zap the secondary entry only: the host page stays, the next fault finds it present.
        var r = new InvalidateRange(HvaOf(0), HvaOf(1), InvalidateEvent.Clear, MayBlock: true);
        _mm.Notifiers.InvalidateRangeStart(r);
        _mm.Notifiers.InvalidateRangeEnd(r);
        Assert.False(Maps(Gpa.FromPageNumber(0), out _));
        Assert.Equal(0x11, Touch(0, AccessKind.Read)[1]);
        Assert.Equal(1, Faults(FaultKind.Present));

        Assert.Equal(1, _manager.PageOut(Gpa.FromPageNumber(0), Page.Size));
        Assert.Equal(0x11, Touch(0, AccessKind.Read)[1]);
        Assert.Equal(1, Faults(FaultKind.SwapIn));

        // A page-out whose swap write fails leaves the page unmapped in the swap cache.
        Touch(1)[2] = 0x22;
        _host.Swap.FaultInjector = new FailingWrites();
        Assert.Equal(0, _manager.PageOut(Gpa.FromPageNumber(1), Page.Size));
        _host.Swap.FaultInjector = null;
        Assert.Equal(0x22, Touch(1, AccessKind.Read)[2]);
        Assert.Equal(1, Faults(FaultKind.SwapCacheHit));
        AssertNoViolation();
    }

    private sealed class FailingWrites : ISwapFaultInjector
    {
        public Exception? BeforeWrite(uint firstSlot, int slots) => new IOException("injected");
        public Exception? BeforeRead(uint slot) => null;
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Translate_FirstTouchThenAgain_FaultsOnceAndReturnsTheSamePage(HostKind host)
    {
        Make(host);
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, new Gpa(0x3123), AccessKind.Write, out byte* p1));
        Assert.True(Maps(new Gpa(0x3000), out var frame));
        int faults = 0;
        SetAfterGetUserPage(_mmu, (_, _) => faults++);
        Assert.Equal(TranslateStatus.Ok, _mmu.Translate(_vcpu, new Gpa(0x3000), AccessKind.Read, out byte* p2));
        Assert.True(p1 == p2);
        Assert.Equal(0, faults);
        Assert.True(Maps(new Gpa(0x3000), out var again) && again == frame);
        AssertNoViolation();
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Translate_OutsideRam_IsUnbacked(HostKind host)
    {
        Make(host);
        Assert.Equal(TranslateStatus.Unbacked, _mmu.Translate(_vcpu, new Gpa(Ram), AccessKind.Read, out _));
    }
}
