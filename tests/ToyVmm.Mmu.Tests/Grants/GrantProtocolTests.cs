using ToyVmm.Mmu.Grants;
using ToyVmm.Mmu.Secondary;
using Xunit;
using Xunit.Abstractions;

namespace ToyVmm.Mmu.Tests.Grants;

/// <summary>
/// The grant protocol under forced interleavings (docs/DESIGN.md "Grants: the XPMEM
/// protocol"), over the real simulated kernel and the small test host: a recall in
/// each window of an attacher's fault, a recall while the attacher's vCPU holds the
/// page in its TLB, references held and dropped, and the grant's life cycle.
/// VM 0 owns a grant of [1 MiB, +16 pages); VM 1 attaches it at 4 MiB.
/// </summary>
public sealed unsafe class GrantProtocolTests(ITestOutputHelper output)
{
    private const ulong Key = 0x51;
    private const ulong GrantGpa = 1UL << 20, AttachGpa = 4UL << 20, Pages = 16, Bytes = Pages * 4096;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    public static TheoryData<GrantHostKind> BothHosts => new() { GrantHostKind.Real, GrantHostKind.Small };

    /// <summary>Both hosts, with the owner (VM 0) and the attacher (VM 1) on each pairing of MMUs.</summary>
    public static TheoryData<GrantHostKind, GrantMmuKind, GrantMmuKind> BothHostsEveryMmu
    {
        get
        {
            var data = new TheoryData<GrantHostKind, GrantMmuKind, GrantMmuKind>();
            foreach (var host in new[] { GrantHostKind.Real, GrantHostKind.Small })
                foreach (var owner in new[] { GrantMmuKind.Ept, GrantMmuKind.Shadow })
                    foreach (var attacher in new[] { GrantMmuKind.Ept, GrantMmuKind.Shadow })
                        data.Add(host, owner, attacher);
            return data;
        }
    }

    private static (GrantFixture F, TestVm Owner, TestVm User, Grant Grant, Attachment Attachment) Attached(GrantHostKind kind,
        GrantMmuKind ownerMmu = GrantMmuKind.Ept, GrantMmuKind attacherMmu = GrantMmuKind.Ept)
    {
        var f = new GrantFixture(kind, vm0: ownerMmu, vm1: attacherMmu);
        var (owner, user) = (f.Vms[0], f.Vms[1]);
        for (ulong i = 0; i < Pages; i++) owner.Write(GrantGpa + i * 4096, 0xA000 + i);
        Assert.Equal(GrantErrors.Ok, owner.Grants.Make(new Gpa(GrantGpa), Bytes, Key));
        Assert.Equal(GrantErrors.Ok, user.Grants.Attach(Key, Bytes, new Gpa(AttachGpa)));
        return (f, owner, user, f.Table.Grants.Single(), user.Grants.Router.Attachments.Single());
    }

    private void AssertNoViolation(GrantFixture f)
    {
        output.WriteLine(f.Checker.FirstViolation?.ToString() ?? $"no violation in {f.Checker.Checks} checks");
        Assert.Equal(0, f.Checker.ViolationCount);
    }

    [Theory]
    [MemberData(nameof(BothHostsEveryMmu))]
    public void AttacherFault_ReadsAndWritesTheOwnersPages(GrantHostKind kind, GrantMmuKind ownerMmu, GrantMmuKind attacherMmu)
    {
        var (f, owner, user, _, _) = Attached(kind, ownerMmu, attacherMmu);
        using var _ = f;
        for (ulong i = 0; i < Pages; i++) Assert.Equal(0xA000 + i, user.Read(AttachGpa + i * 4096));
        user.Write(AttachGpa + 8, 77);
        Assert.Equal(77UL, owner.Read(GrantGpa + 8));
        AssertNoViolation(f);
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Recall_BetweenGetUserPagesAndThePfnStore_GivesThePageBackAndTheFaultRetries(GrantHostKind kind)
    {
        var (f, owner, user, grant, _) = Attached(kind);
        using var _ = f;
        int calls = 0;
        grant.AfterGetUserPageHook = (page, frame) =>
        {
            if (Interlocked.Increment(ref calls) != 1) return;
            // The owner's page-out runs whole while the fault holds its get_user_pages frame, mutex released.
            var pageOut = new Thread(() => owner.PageOut(GrantGpa + page * 4096, 4096));
            pageOut.Start();
            Assert.True(pageOut.Join(Patience));
        };
        Assert.Equal(0xA003UL, user.Read(AttachGpa + 3 * 4096));
        Assert.True(calls >= 2, "the fault filled the PFN table a second time");
        Assert.True(grant.Counts.Retries >= 1);
        Assert.True(user.Grants.Router.Attachments.Single().Mmu is EptMmu ept && ept.Table.Lookup((AttachGpa >> 12) + 3).IsPresent);
        AssertNoViolation(f);
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Recall_BetweenTheGrantAndTheAttachersInstall_MarksTheFaulterWhichRetries(GrantHostKind kind)
    {
        var (f, owner, user, grant, attachment) = Attached(kind);
        using var _ = f;
        var ept = (EptMmu)attachment.Mmu;
        int calls = 0;
        ept.AfterGetUserPageHook = (gpa, frame) =>
        {
            if (Interlocked.Increment(ref calls) != 1) return;
            // The fault took its frame from the grant and is on its list of ongoing faults.
            var pageOut = new Thread(() => owner.PageOut(GrantGpa + 5 * 4096, 4096));
            pageOut.Start();
            Assert.True(pageOut.Join(Patience));
        };
        Assert.Equal(0xA005UL, user.Read(AttachGpa + 5 * 4096));
        Assert.True(calls >= 2, "the marked fault gave its page back and faulted again");
        Assert.True(grant.Counts.MarkedFaults >= 1);
        var entry = ept.Table.Lookup((AttachGpa >> 12) + 5);
        Assert.True(entry.IsPresent);
        Assert.True(attachment.View.FrameBacks(entry.Frame, grant.Start.Add(5 * 4096)), "the entry maps the page's frame now");
        AssertNoViolation(f);
    }

    [Theory]
    [MemberData(nameof(BothHostsEveryMmu))]
    public void Recall_AttachersVcpuHoldsThePageInGuestMode_WaitsForItsFlush(GrantHostKind kind, GrantMmuKind ownerMmu, GrantMmuKind attacherMmu)
    {
        var (f, owner, user, grant, attachment) = Attached(kind, ownerMmu, attacherMmu);
        using var _ = f;
        Assert.Equal(0xA002UL, user.Read(AttachGpa + 2 * 4096));
        user.Vcpu.EnterGuest();
        var pageOut = new Thread(() => owner.PageOut(GrantGpa + 2 * 4096, 4096));
        pageOut.Start();
        Assert.False(pageOut.Join(TimeSpan.FromMilliseconds(100)), "the recall waits: the attacher's vCPU may still use the page");
        Assert.Equal(VcpuLink.FlushRequest, user.Vcpu.TakeRequests());
        user.Vcpu.AcknowledgeFlush();
        Assert.True(pageOut.Join(Patience));
        user.Vcpu.ExitGuest();
        Assert.False(attachment.Maps(AttachGpa + 2 * 4096));
        Assert.Equal(0xA002UL, user.Read(AttachGpa + 2 * 4096));   // back from swap through the grant
        AssertNoViolation(f);
    }

    [Theory]
    [MemberData(nameof(BothHostsEveryMmu))]
    public void Recall_DropsTheGrantsReferences_SoTheHostFreesTheFrames(GrantHostKind kind, GrantMmuKind ownerMmu, GrantMmuKind attacherMmu)
    {
        var (f, owner, user, grant, _) = Attached(kind, ownerMmu, attacherMmu);
        using var _ = f;
        for (ulong i = 0; i < Pages; i++) user.Read(AttachGpa + i * 4096);
        Assert.Equal((int)Pages, grant.FilledPages);   // one reference per page, for all attachers
        owner.PageOut(GrantGpa, Bytes);
        Assert.Equal(0, grant.FilledPages);
        Assert.Equal((long)Pages, grant.Counts.RecalledPages);
        for (ulong i = 0; i < Pages; i++) Assert.Equal(0xA000 + i, user.Read(AttachGpa + i * 4096));
        AssertNoViolation(f);
    }

    [Theory]
    [MemberData(nameof(BothHostsEveryMmu))]
    public void OwnerDiscard_ZeroesTheGrantedPagesForTheAttacher(GrantHostKind kind, GrantMmuKind ownerMmu, GrantMmuKind attacherMmu)
    {
        var (f, owner, user, _, _) = Attached(kind, ownerMmu, attacherMmu);
        using var _ = f;
        Assert.Equal(0xA001UL, user.Read(AttachGpa + 4096));
        owner.Evict(GrantGpa, Bytes);
        Assert.Equal(0UL, user.Read(AttachGpa + 4096));
        AssertNoViolation(f);
    }

    [Theory]
    [MemberData(nameof(BothHostsEveryMmu))]
    public void AttacherPageOut_PagesOutTheOwnersPages_AndDiscardIsRefused(GrantHostKind kind, GrantMmuKind ownerMmu, GrantMmuKind attacherMmu)
    {
        var (f, owner, user, grant, _) = Attached(kind, ownerMmu, attacherMmu);
        using var _ = f;
        for (ulong i = 0; i < Pages; i++) user.Read(AttachGpa + i * 4096);
        long paged = user.Grants.Management.PageOut(new Gpa(AttachGpa), Bytes);
        Assert.True(paged > 0, $"paged {paged}");
        Assert.Equal(0, grant.FilledPages);
        Assert.Equal(GuestRange.Invalid, user.Grants.Management.Discard(new Gpa(AttachGpa), 4096));
        Assert.Equal(0xA007UL, owner.Read(GrantGpa + 7 * 4096));
        Assert.Equal(0xA007UL, user.Read(AttachGpa + 7 * 4096));
        AssertNoViolation(f);
    }

    /// <summary>
    /// A vectored PAGEOUT of the attacher listing attached pages and pages of its own: the
    /// attached ones page out the owner's pages, the others its own; every value survives;
    /// a bad entry anywhere refuses the whole list.
    /// </summary>
    [Theory]
    [MemberData(nameof(BothHostsEveryMmu))]
    public void AttacherPageOutPages_AttachedAndOwnPagesInOneList_EachToItsOwner(GrantHostKind kind, GrantMmuKind ownerMmu, GrantMmuKind attacherMmu)
    {
        var (f, owner, user, grant, _) = Attached(kind, ownerMmu, attacherMmu);
        using var _ = f;
        const ulong Own = 2UL << 20;
        for (ulong i = 0; i < Pages; i++) user.Read(AttachGpa + i * 4096);
        user.Write(Own, 0xB001);
        user.Write(Own + 40 * 4096, 0xB002);
        Gpa[] list = [new(AttachGpa + 3 * 4096), new(Own + 40 * 4096), new(AttachGpa + 12 * 4096), new(Own)];

        Assert.Equal(GuestRange.Invalid, user.Grants.Management.PageOutPages([.. list, new Gpa(AttachGpa + 5)]));
        Assert.Equal((int)Pages, grant.FilledPages);

        Assert.Equal(4, user.Grants.Management.PageOutPages(list));
        Assert.Equal((int)Pages - 2, grant.FilledPages);   // the two attached pages were the owner's, recalled from the attacher
        Assert.Equal(0xA003UL, owner.Read(GrantGpa + 3 * 4096));
        Assert.Equal(0xA00CUL, user.Read(AttachGpa + 12 * 4096));
        Assert.Equal(0xB001UL, user.Read(Own));
        Assert.Equal(0xB002UL, user.Read(Own + 40 * 4096));
        AssertNoViolation(f);
    }

    /// <summary>
    /// The checker covers attachers' entries: a grant that no longer hears the owner's
    /// notifiers (so never recalls) leaves the attacher mapping the old frame after the
    /// owner's page changed, and the attacher's next TLB fill from it is caught.
    /// </summary>
    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Checker_GrantThatNeverRecalls_CatchesTheAttachersStaleEntry(GrantHostKind kind)
    {
        var (f, owner, user, grant, _) = Attached(kind);
        using var _ = f;
        Assert.Equal(0xA004UL, user.Read(AttachGpa + 4 * 4096));
        Assert.True(grant.OwnerHost.Notifiers.Unregister(grant));   // the grant is deaf from here on
        owner.Evict(GrantGpa + 4 * 4096, 4096);
        owner.Write(GrantGpa + 4 * 4096, 0xBEEF);                   // the owner's page is a new frame now
        Assert.Equal(0, f.Checker.ViolationCount);
        Assert.NotEqual(0xBEEFUL, user.Read(AttachGpa + 4 * 4096)); // the attacher still reads the old frame
        output.WriteLine(f.Checker.FirstViolation?.ToString() ?? "no violation");
        Assert.True(f.Checker.ViolationCount > 0);
        Assert.Contains("no longer backs", f.Checker.FirstViolation!.Rule);
        grant.OwnerHost.Notifiers.Register(grant);                  // so that the fixture's teardown removes it as usual
    }
}
