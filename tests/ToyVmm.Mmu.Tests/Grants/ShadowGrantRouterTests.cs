using ToyVmm.Mmu.Grants;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Mmu.Secondary.Shadow;
using Xunit;
using Xunit.Abstractions;

namespace ToyVmm.Mmu.Tests.Grants;

/// <summary>
/// The attacher on the shadow MMU (docs/DESIGN.md "Grants under the shadow MMU"): a
/// guest-virtual fill of an attached page goes through the attachment's MMU and never
/// into the VM's own shadow tables, the grant's recall zaps it and asks the vCPU to
/// flush, and an own entry of an attached page is refused on the hit path. The test
/// plays the vCPU: it writes the attacher's page tables and walks them itself.
/// </summary>
public sealed unsafe class ShadowGrantRouterTests(ITestOutputHelper output)
{
    private const ulong Key = 0x5a, G = 1UL << 20, A = 4UL << 20, Bytes = 4 * 4096UL;
    private const ulong Pml4 = 0x1F_F000, Pdpt = 0x20_0000, Pd = 0x20_1000, Pt = 0x20_2000;
    private const ulong OwnVa = 0x7000, AttachedVa = 0x8000, OwnData = 0x30_0000;

    private static (GrantFixture F, TestVm Owner, TestVm User, ShadowGrantRouter Router, ShadowContext Context) Make()
    {
        var f = new GrantFixture(GrantHostKind.Real, vm0: GrantMmuKind.Ept, vm1: GrantMmuKind.Shadow);
        var (owner, user) = (f.Vms[0], f.Vms[1]);
        owner.Write(G, 0xC0FFEE);
        // The attacher's tables: OwnVa -> its own page, AttachedVa -> the first attached page.
        user.Write(Pml4, Pdpt | 7);
        user.Write(Pdpt, Pd | 7);
        user.Write(Pd, Pt | 7);
        user.Write(Pt + 7 * 8, OwnData | 7);
        user.Write(Pt + 8 * 8, A | 7);
        Assert.Equal(GrantErrors.Ok, owner.Grants.Make(new Gpa(G), Bytes, Key));
        Assert.Equal(GrantErrors.Ok, user.Grants.Attach(Key, Bytes, new Gpa(A)));
        TakeFlushes(user);
        var context = new ShadowContext();
        context.Reset(Pml4, nxe: false);
        return (f, owner, user, (ShadowGrantRouter)user.Grants.Router, context);
    }

    private static void TakeFlushes(TestVm vm)
    {
        if (vm.Vcpu.TakeRequests() != 0) vm.Vcpu.AcknowledgeFlush();
    }

    /// <summary>The guest walk of <paramref name="va"/> through the router, as PageWalk.cs records it.</summary>
    private static GuestWalk Walk(TestVm vm, ulong va)
    {
        var walk = new GuestWalk();
        ulong table = Pml4;
        for (int level = 4; level >= 1; level--)
        {
            ulong entryGpa = table + ((va >> (12 + 9 * (level - 1))) & 511) * 8;
            ulong e = vm.Read(entryGpa);
            Assert.True((e & 1) != 0, $"level {level} entry not present");
            walk.EntryGpa[4 - level] = entryGpa;
            walk.Entry[4 - level] = e;
            walk.Depth = 5 - level;
            table = e & 0x000F_FFFF_FFFF_F000;
        }
        walk.Gpa = table;
        return walk;
    }

    /// <summary>A TLB miss of <paramref name="va"/> as the vCPU handles it: the shadow tables, then walk and fill.</summary>
    private static byte* Access(IShadowPaging paging, TestVm vm, ShadowContext context, ulong va, AccessKind kind)
    {
        for (int tries = 0; tries < 8; tries++)
        {
            var st = paging.TranslateVirtual(vm.Vcpu, context, va, kind, user: true, wp: true, out byte* page, out _);
            if (st == VirtualStatus.Ok) return page;
            Assert.Equal(VirtualStatus.Miss, st);
            var walk = Walk(vm, va);
            st = paging.FillVirtual(vm.Vcpu, context, va, in walk, kind, out page, out _);
            TakeFlushes(vm);
            if (st == VirtualStatus.Ok) return page;
            Assert.Equal(VirtualStatus.Retry, st);
        }
        throw new InvalidOperationException($"va 0x{va:x}: the fill kept retrying");
    }

    private void AssertNoViolation(GrantFixture f)
    {
        output.WriteLine(f.Checker.FirstViolation?.ToString() ?? $"no violation in {f.Checker.Checks} checks");
        Assert.Equal(0, f.Checker.ViolationCount);
    }

    [Fact]
    public void FillVirtual_OfAnAttachedPage_GoesThroughTheAttachmentAndNeverIntoTheOwnShadowTables()
    {
        var (f, owner, user, router, context) = Make();
        using var fixture = f;
        var own = (ShadowMmu)user.Mmu;
        var attachment = user.Grants.Router.Attachments.Single();
        byte* page = Access(router, user, context, AttachedVa, AccessKind.Write);
        Assert.Equal(0xC0FFEEUL, *(ulong*)page);
        *(ulong*)(page + 8) = 42;
        Assert.Equal(42UL, owner.Read(G + 8));
        Assert.True(attachment.Maps(A));
        Assert.False(own.TryLookup(new Gpa(A), out _, out _), "an attached page is never in the own shadow tables");
        // The own page next to it is a shadow leaf, hit from then on.
        Access(router, user, context, OwnVa, AccessKind.Write);
        Assert.True(own.TryLookup(new Gpa(OwnData), out _, out _));
        Assert.Equal(VirtualStatus.Ok, router.TranslateVirtual(user.Vcpu, context, OwnVa, AccessKind.Read, true, true, out _, out _));
        Assert.Equal(VirtualStatus.Miss, router.TranslateVirtual(user.Vcpu, context, AttachedVa, AccessKind.Read, true, true, out _, out _));
        AssertNoViolation(f);
    }

    [Fact]
    public void OwnersPageOut_OfAPageTheShadowAttacherHolds_ZapsItAndAsksTheVcpuToFlush()
    {
        var (f, owner, user, router, context) = Make();
        using var fixture = f;
        var attachment = user.Grants.Router.Attachments.Single();
        Access(router, user, context, AttachedVa, AccessKind.Read);
        user.Vcpu.EnterGuest();
        var pageOut = new Thread(() => owner.PageOut(G, 4096));
        pageOut.Start();
        Assert.False(pageOut.Join(TimeSpan.FromMilliseconds(100)), "the recall waits: the attacher's vCPU may still use the page");
        Assert.Equal(VcpuLink.FlushRequest, user.Vcpu.TakeRequests());
        user.Vcpu.AcknowledgeFlush();
        Assert.True(pageOut.Join(TimeSpan.FromSeconds(20)));
        user.Vcpu.ExitGuest();
        Assert.False(attachment.Maps(A));
        Assert.Equal(0xC0FFEEUL, *(ulong*)Access(router, user, context, AttachedVa, AccessKind.Read));   // back from swap
        AssertNoViolation(f);
    }

    [Fact]
    public void TranslateVirtual_OwnEntryOfAPageNowAttached_IsRefusedAndTheFillGoesToTheAttachment()
    {
        var (f, owner, user, router, context) = Make();
        using var fixture = f;
        var own = (ShadowMmu)user.Mmu;
        // What a fill that read the list before the attach could leave: an own leaf of an attached page.
        byte* stale = Access(own, user, context, AttachedVa, AccessKind.Read);
        Assert.True(own.TryLookup(new Gpa(A), out _, out _));
        Assert.Equal(VirtualStatus.Miss, router.TranslateVirtual(user.Vcpu, context, AttachedVa, AccessKind.Read, true, true, out _, out _));
        byte* page = Access(router, user, context, AttachedVa, AccessKind.Read);
        Assert.True(page != stale);
        Assert.Equal(0xC0FFEEUL, *(ulong*)page);
        AssertNoViolation(f);
    }
}
