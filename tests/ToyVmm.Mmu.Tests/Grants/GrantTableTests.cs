using ToyVmm.Mmu.Grants;
using ToyVmm.Mmu.Secondary;
using Xunit;
using Xunit.Abstractions;

namespace ToyVmm.Mmu.Tests.Grants;

/// <summary>
/// Make, attach, detach and remove exactly as GUEST-ABI 1.1 says (every error code,
/// a failed call changes nothing), removal during an attach, and a VM ending while
/// its grant is attached or while it has attachments; over both hosts.
/// </summary>
public sealed unsafe class GrantTableTests(ITestOutputHelper output)
{
    private const ulong Key = 0x77, G = 1UL << 20, A = 4UL << 20, Page = 4096, Bytes = 8 * Page;
    private const ulong Top = GrantFixture.Ram - 0x100000;   // the start of the VMM's reserved top
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    public static TheoryData<GrantHostKind> BothHosts => new() { GrantHostKind.Real, GrantHostKind.Small };

    private void AssertNoViolation(GrantFixture f)
    {
        output.WriteLine(f.Checker.FirstViolation?.ToString() ?? $"no violation in {f.Checker.Checks} checks");
        Assert.Equal(0, f.Checker.ViolationCount);
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Make_BadRangesAndKeysInUse_AnswerAsTheAbiSays(GrantHostKind kind)
    {
        using var f = new GrantFixture(kind);
        var (owner, other) = (f.Vms[0].Grants, f.Vms[1].Grants);
        Assert.Equal(GrantErrors.Invalid, owner.Make(new Gpa(G + 8), Page, Key));        // unaligned start
        Assert.Equal(GrantErrors.Invalid, owner.Make(new Gpa(G), Page + 1, Key));        // unaligned size
        Assert.Equal(GrantErrors.Invalid, owner.Make(new Gpa(G), 0, Key));               // empty
        Assert.Equal(GrantErrors.Invalid, owner.Make(new Gpa(Top - Page), 2 * Page, Key)); // into the reserved top
        Assert.Equal(GrantErrors.Invalid, owner.Make(new Gpa(ulong.MaxValue & ~0xFFFUL), 2 * Page, Key)); // wraps
        Assert.Equal(0, f.Table.Count);
        Assert.Equal(GrantErrors.Ok, owner.Make(new Gpa(G), Bytes, Key));
        Assert.Equal(GrantErrors.KeyInUse, owner.Make(new Gpa(G), Bytes, Key));
        Assert.Equal(GrantErrors.KeyInUse, other.Make(new Gpa(G), Bytes, Key));          // keys are the host's
        Assert.Equal(GrantErrors.Ok, owner.Make(new Gpa(G), Bytes, Key + 1));             // one range, two keys
        Assert.Equal(2, f.Table.Count);
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void AttachDetachRemove_EveryErrorCode_AndAFailedCallChangesNothing(GrantHostKind kind)
    {
        using var f = new GrantFixture(kind);
        var (owner, user) = (f.Vms[0].Grants, f.Vms[1].Grants);
        Assert.Equal(GrantErrors.NoSuchGrant, user.Attach(Key, Bytes, new Gpa(A)));        // not made yet
        Assert.Equal(GrantErrors.Ok, owner.Make(new Gpa(G), Bytes, Key));
        Assert.Equal(GrantErrors.Invalid, user.Attach(Key, Bytes + Page, new Gpa(A)));    // larger than the grant
        Assert.Equal(GrantErrors.Invalid, user.Attach(Key, Bytes, new Gpa(A + 1)));       // unaligned
        Assert.Equal(GrantErrors.Invalid, user.Attach(Key, Bytes, new Gpa(Top)));         // the reserved top
        Assert.Empty(user.Router.Attachments);
        Assert.Equal(GrantErrors.Ok, user.Attach(Key, Page, new Gpa(A)));                 // the first page only
        Assert.Equal(GrantErrors.Busy, user.Attach(Key, Bytes, new Gpa(A - 4 * Page)));   // overlaps it
        Assert.Equal(GrantErrors.Ok, user.Attach(Key, Bytes, new Gpa(A + Page)));         // a second view beside it
        Assert.Equal(2, user.Router.Attachments.Count);
        Assert.Equal(GrantErrors.Invalid, user.Detach(new Gpa(A), 2 * Page));             // not exactly an attachment
        Assert.Equal(GrantErrors.Ok, user.Detach(new Gpa(A), Page));
        Assert.Equal(GrantErrors.Invalid, user.Detach(new Gpa(A), Page));                 // already gone
        Assert.Equal(GrantErrors.NoSuchGrant, user.Remove(Key));                          // only the owner removes
        Assert.Equal(GrantErrors.NoSuchGrant, owner.Remove(Key + 9));
        Assert.Single(user.Router.Attachments);
        Assert.Equal(GrantErrors.Ok, owner.Remove(Key));
        Assert.Empty(user.Router.Attachments);                                            // removal detaches
        Assert.Equal(GrantErrors.Invalid, user.Detach(new Gpa(A + Page), Bytes));
        Assert.Equal(GrantErrors.NoSuchGrant, owner.Remove(Key));
        Assert.Equal(GrantErrors.Ok, user.Make(new Gpa(G), Bytes, Key));                  // the key is free again
        AssertNoViolation(f);
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Attach_DiscardsWhatTheAttacherHadThere_AndDetachLeavesZeroes(GrantHostKind kind)
    {
        using var f = new GrantFixture(kind);
        var (owner, user) = (f.Vms[0], f.Vms[1]);
        owner.Write(G, 0x0BAD);
        user.Write(A, 0x5EC2E7);
        Assert.Equal(GrantErrors.Ok, owner.Grants.Make(new Gpa(G), Bytes, Key));
        Assert.Equal(GrantErrors.Ok, user.Grants.Attach(Key, Bytes, new Gpa(A)));
        Assert.Equal(0x0BADUL, user.Read(A));
        user.Write(A + 16, 42);
        Assert.Equal(GrantErrors.Ok, user.Grants.Detach(new Gpa(A), Bytes));
        Assert.Equal(0UL, user.Read(A));           // private zero-filled memory again: not the old secret
        Assert.Equal(0UL, user.Read(A + 16));
        Assert.Equal(42UL, owner.Read(G + 16));    // the owner keeps what the attacher wrote
        AssertNoViolation(f);
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void Remove_DuringAnAttach_WaitsForItThenDetachesIt(GrantHostKind kind)
    {
        using var f = new GrantFixture(kind);
        var (owner, user) = (f.Vms[0], f.Vms[1]);
        Assert.Equal(GrantErrors.Ok, owner.Grants.Make(new Gpa(G), Bytes, Key));
        Thread? remover = null;
        long removed = long.MinValue;
        f.Table.DuringAttachHook = () =>
        {
            remover = new Thread(() => removed = owner.Grants.Remove(Key));
            remover.Start();
            Assert.False(remover.Join(TimeSpan.FromMilliseconds(100)), "the removal waits for the attach in progress");
        };
        Assert.Equal(GrantErrors.Ok, user.Grants.Attach(Key, Bytes, new Gpa(A)));
        f.Table.DuringAttachHook = null;
        Assert.True(remover!.Join(Patience));
        Assert.Equal(GrantErrors.Ok, removed);
        Assert.Empty(user.Grants.Router.Attachments);
        Assert.Equal(0UL, user.Read(A));
        Assert.Equal(GrantErrors.Invalid, user.Grants.Detach(new Gpa(A), Bytes));
        AssertNoViolation(f);
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void OwnerEnds_WhileAttachedAndTheAttachersVcpuInGuestMode_AttacherSeesZeroesAndNoViolation(GrantHostKind kind)
    {
        using var f = new GrantFixture(kind);
        var (owner, user) = (f.Vms[0], f.Vms[1]);
        for (ulong i = 0; i < 8; i++) owner.Write(G + i * Page, 0xF00 + i);
        Assert.Equal(GrantErrors.Ok, owner.Grants.Make(new Gpa(G), Bytes, Key));
        Assert.Equal(GrantErrors.Ok, user.Grants.Attach(Key, Bytes, new Gpa(A)));
        for (ulong i = 0; i < 8; i++) Assert.Equal(0xF00 + i, user.Read(A + i * Page));
        user.Vcpu.EnterGuest();
        var end = new Thread(() =>
        {
            f.Table.VmEnded(owner.Grants);
            owner.Space?.Dispose();     // the owner's address space goes (its MMU zaps at release), and its frames with it
            owner.Mmu.Dispose();
        });
        end.Start();
        Assert.False(end.Join(TimeSpan.FromMilliseconds(100)), "the detach waits for the attacher's flush");
        Assert.Equal(VcpuLink.FlushRequest, user.Vcpu.TakeRequests());
        user.Vcpu.AcknowledgeFlush();
        Assert.True(end.Join(Patience));
        user.Vcpu.ExitGuest();
        Assert.Empty(user.Grants.Router.Attachments);
        Assert.Equal(0, f.Table.Count);
        for (ulong i = 0; i < 8; i++) Assert.Equal(0UL, user.Read(A + i * Page));
        AssertNoViolation(f);
    }

    [Theory]
    [MemberData(nameof(BothHosts))]
    public void AttacherEnds_ItsAttachmentsAreDetached_TheGrantStays(GrantHostKind kind)
    {
        using var f = new GrantFixture(kind);
        var (owner, user) = (f.Vms[0], f.Vms[1]);
        Assert.Equal(GrantErrors.Ok, owner.Grants.Make(new Gpa(G), Bytes, Key));
        Assert.Equal(GrantErrors.Ok, user.Grants.Attach(Key, Bytes, new Gpa(A)));
        user.Write(A, 5);
        f.Table.VmEnded(user.Grants);
        Assert.Empty(user.Grants.Router.Attachments);
        Assert.Equal(1, f.Table.Count);
        Assert.Equal(0, f.Table.Grants.Single().Attachers);
        Assert.Equal(5UL, owner.Read(G));
        AssertNoViolation(f);
    }
}
