using ToyVmm.Mmu.Grants;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Mmu.Secondary.Shadow;
using Xunit.Abstractions;

namespace ToyVmm.Mmu.Tests.Secondary.Contract;

/// <summary>
/// The secondary-MMU contract run against an attacher's MMU that maps a grant:
/// the host under test is the grant's owner, the whole RAM is granted, and the MMU
/// faults through the grant's view (its PFN table) and hears of host changes only
/// through the grant's recall. Every guarantee the contract asks of an MMU over the
/// host must hold as well through a grant, for either kind of attacher (the subclasses).
/// </summary>
public abstract class GrantAttachmentContractTests(ITestOutputHelper output) : SecondaryMmuContractTests(output)
{
    /// <summary>The attacher's MMU of the kind under test over the grant's view.</summary>
    protected abstract ISecondaryMmu NewAttacherMmu(IHostMemory view, ulong ramBytes, Hva ramBase, IMmuInvariantChecker checker, IMmuEventSink events);

    /// <summary>The attacher's MMU inside the wrapper that removes the grant with it.</summary>
    protected static ISecondaryMmu Inner(ISecondaryMmu mmu) => ((GrantedMmu)mmu).Inner;

    private readonly List<Grant> _grants = [];

    protected override ISecondaryMmu CreateMmu(IHostMemory host, ulong ramBytes, Hva ramBase, IMmuInvariantChecker checker, IMmuEventSink events)
    {
        // Granted well past RAM, so that the contract's second slots (host memory mapped
        // after RAM) are granted too.
        var grant = new Grant(0x6b, this, host, NoMadvise.Instance, new Gpa(0), ramBase, GrantBytes);
        _grants.Add(grant);
        var view = grant.NewView(GrantBytes)!;
        return new GrantedMmu(NewAttacherMmu(view, ramBytes, ramBase, checker, events), grant);
    }

    /// <summary>The grant holds a reference to each page it hands out and recalls faulters by list, so even the 2008 order cannot free a frame under a fault.</summary>
    protected override bool Broken2008Races => false;

    /// <summary>The grant's PFN table holds one reference per mapped page.</summary>
    protected override bool HoldsPageReferences => true;

    /// <summary>The owner's start recalls and returns: the attacher's own sequence never has the owner's invalidation in flight.</summary>
    protected override bool SlotChangesWaitForHostInvalidations => false;

    /// <summary>
    /// A fault through a grant makes its faulter record (GrantFaulter, XPMEM's list of ongoing
    /// faults), which stays on the grant's list until a later fault or recall prunes it.
    /// </summary>
    protected override int FaultAllocationBound => 64;

    private const ulong GrantBytes = 2UL << 30;

    /// <summary>The attacher's MMU, disposed with the grant it maps.</summary>
    private sealed unsafe class GrantedMmu(ISecondaryMmu inner, Grant grant) : ISecondaryMmu, IDisposable
    {
        public ISecondaryMmu Inner => inner;
        public ulong RamBytes => inner.RamBytes;
        public SlotTable Slots => inner.Slots;
        public void AddSlot(MemorySlot slot) => inner.AddSlot(slot);
        public bool RemoveSlot(int id) => inner.RemoveSlot(id);
        public void AttachVcpu(VcpuLink vcpu) => inner.AttachVcpu(vcpu);
        public void DetachVcpu(VcpuLink vcpu) => inner.DetachVcpu(vcpu);
        public TranslateStatus Translate(VcpuLink vcpu, Gpa gpa, AccessKind kind, out byte* hostPage) => inner.Translate(vcpu, gpa, kind, out hostPage);

        public void Dispose()
        {
            ((IDisposable)inner).Dispose();
            grant.Remove();
        }
    }

    private sealed class NoMadvise : IHostMadvise
    {
        public static readonly NoMadvise Instance = new();
        public long PageOut(Hva start, ulong bytes) => throw new InvalidOperationException("the contract pages out through the host");
        public long PageOutPages(ReadOnlySpan<Hva> pages) => throw new InvalidOperationException("the contract pages out through the host");
        public long DontNeed(Hva start, ulong bytes) => throw new InvalidOperationException("the contract discards through the host");
    }
}

/// <summary>The grant attachment contract with an EPT attacher.</summary>
public sealed class EptGrantAttachmentContractTests(ITestOutputHelper output) : GrantAttachmentContractTests(output)
{
    protected override ISecondaryMmu NewAttacherMmu(IHostMemory view, ulong ramBytes, Hva ramBase, IMmuInvariantChecker checker, IMmuEventSink events) =>
        new EptMmu(view, ramBytes, ramBase) { Checker = checker, Events = events };

    protected override void SetAfterGetUserPage(ISecondaryMmu mmu, Action<Gpa, Hfn>? hook) =>
        ((EptMmu)Inner(mmu)).AfterGetUserPageHook = hook;

    protected override MappedPage? Lookup(ISecondaryMmu mmu, Gpa gpa)
    {
        var entry = ((EptMmu)Inner(mmu)).Table.Lookup(gpa.PageNumber);
        return entry.IsPresent ? new MappedPage(entry.Frame, entry.IsDirty) : null;
    }
}

/// <summary>
/// The grant attachment contract with a shadow attacher: a VM on the shadow MMU maps an
/// attached range through a shadow MMU over the grant's view, whose guest-physical
/// translations are its direct role and whose entries the recall zaps through its reverse map.
/// </summary>
public sealed class ShadowGrantAttachmentContractTests(ITestOutputHelper output) : GrantAttachmentContractTests(output)
{
    protected override ISecondaryMmu NewAttacherMmu(IHostMemory view, ulong ramBytes, Hva ramBase, IMmuInvariantChecker checker, IMmuEventSink events) =>
        new ShadowMmu(view, ramBytes, ramBase) { Checker = checker, Events = events };

    protected override void SetAfterGetUserPage(ISecondaryMmu mmu, Action<Gpa, Hfn>? hook) =>
        ((ShadowMmu)Inner(mmu)).AfterGetUserPageHook = hook;

    protected override MappedPage? Lookup(ISecondaryMmu mmu, Gpa gpa) =>
        ((ShadowMmu)Inner(mmu)).TryLookup(gpa, out var frame, out bool dirty) ? new MappedPage(frame, dirty) : null;
}
