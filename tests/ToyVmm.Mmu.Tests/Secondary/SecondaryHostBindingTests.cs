using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Secondary;
using Xunit;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Secondary;

/// <summary>The EPT-like MMU running on the real host: guest RAM larger than the frame pool.</summary>
public unsafe class SecondaryHostBindingTests
{
    [Fact]
    public void EptOnHost_GuestRamFourTimesThePool_ContentsSurviveReclaimAndHypercalls()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        const ulong ramPages = 512;
        var hva = mm.Map(ramPages * Page.Size, HostProtection.ReadWrite);
        var binding = new SecondaryHostBinding(mm);
        using var ept = new EptMmu(binding, ramPages * Page.Size, hva);
        var checker = new MmuInvariantChecker();
        ept.Checker = checker;
        host.FrameFreed = checker.OnFrameFree;
        var vcpu = new VcpuLink(0);
        ept.AttachVcpu(vcpu);
        var manager = new GuestMemoryManager(binding, ept);

        for (ulong p = 0; p < ramPages; p++)
        {
            Assert.Equal(TranslateStatus.Ok, ept.Translate(vcpu, Gpa.FromPageNumber(p), AccessKind.Write, out byte* page));
            *(ulong*)(page + 8) = p * 0x1_0001 + 7;
        }
        for (ulong p = 0; p < ramPages; p++)
        {
            Assert.Equal(TranslateStatus.Ok, ept.Translate(vcpu, Gpa.FromPageNumber(p), AccessKind.Read, out byte* page));
            Assert.Equal(p * 0x1_0001 + 7, *(ulong*)(page + 8));
        }
        Assert.True(host.Stats.PagesWrittenToSwap > 0, "the pool is smaller than guest RAM, so pages went to swap");

        // Hypercalls: PAGEOUT keeps contents, DISCARD zeroes.
        for (ulong p = 0; p < 64; p++) Assert.Equal(TranslateStatus.Ok, ept.Translate(vcpu, Gpa.FromPageNumber(p), AccessKind.Read, out _));
        Assert.True(manager.PageOut(new Gpa(0), 64 * Page.Size) > 0);
        Assert.Equal(64, manager.Discard(Gpa.FromPageNumber(64), 64 * Page.Size));
        for (ulong p = 0; p < 128; p++)
        {
            Assert.Equal(TranslateStatus.Ok, ept.Translate(vcpu, Gpa.FromPageNumber(p), AccessKind.Read, out byte* page));
            Assert.Equal(p < 64 ? p * 0x1_0001 + 7 : 0UL, *(ulong*)(page + 8));
        }
        Assert.Null(checker.FirstViolation);
        Assert.True(checker.Checks > 0);
        AssertConsistent(host, "after EPT on host");
    }

    [Fact]
    public void Binding_MapsStatuses()
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var ro = mm.Map(Page.Size, HostProtection.Read);
        var b = new SecondaryHostBinding(mm);
        Assert.Equal(HostFaultResult.NoMapping, b.GetUserPage(new Hva(0x1000), false, out _));
        Assert.Equal(HostFaultResult.Protection, b.GetUserPage(ro, true, out _));
        Assert.Equal(HostFaultResult.Ok, b.GetUserPage(ro, false, out var f));
        Assert.True(b.FrameBacks(f, ro));
        b.PutUserPage(f, PageRelease.Clean);
        mm.DontNeed(ro, Page.Size);
        Assert.False(b.FrameBacks(f, ro));
    }

    [Theory]
    [InlineData(PageRelease.Unused, false)]
    [InlineData(PageRelease.Clean, false)]
    [InlineData(PageRelease.Dirty, true)]
    public void PutUserPage_OnCleanSwappedInPage_MarksDirtyOnlyForDirty(PageRelease how, bool dirty)
    {
        using var host = NewHost(frames: 128);
        var mm = host.CreateAddressSpace();
        var hva = mm.Map(Page.Size, HostProtection.ReadWrite);
        var b = new SecondaryHostBinding(mm);
        Assert.Equal(HostFaultResult.Ok, b.GetUserPage(hva, true, out var f));
        b.PutUserPage(f, PageRelease.Dirty);
        Assert.Equal(1, b.PageOut(hva, Page.Size));                     // written to swap: the copy is current
        Assert.Equal(HostFaultResult.Ok, b.GetUserPage(hva, false, out f)); // swapped in, clean
        Assert.Equal(0, (int)(host.Frames.FlagsOf(f.Value) & FrameFlags.Dirty));
        b.PutUserPage(f, how);
        Assert.Equal(dirty, (host.Frames.FlagsOf(f.Value) & FrameFlags.Dirty) != 0);
        AssertConsistent(host, "after PutUserPage");
    }
}
