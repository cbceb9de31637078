using ToyVmm.Mmu.Grants;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Secondary;
using Xunit.Abstractions;

namespace ToyVmm.Mmu.Tests.Secondary.Contract;

/// <summary>
/// The secondary-MMU contract run against an attacher's EPT MMU that maps a grant:
/// the host under test is the grant's owner, the whole RAM is granted, and the MMU
/// faults through the grant's view (its PFN table) and hears of host changes only
/// through the grant's recall. Every guarantee the contract asks of an MMU over the
/// host must hold as well through a grant.
/// </summary>
public sealed class GrantAttachmentContractTests(ITestOutputHelper output) : SecondaryMmuContractTests(output)
{
    private readonly List<Grant> _grants = [];

    protected override ISecondaryMmu CreateMmu(IHostMemory host, ulong ramBytes, Hva ramBase, IMmuInvariantChecker checker, IMmuEventSink events)
    {
        // Granted well past RAM, so that the contract's second slots (host memory mapped
        // after RAM) are granted too.
        var grant = new Grant(0x6b, this, host, NoMadvise.Instance, new Gpa(0), ramBase, GrantBytes);
        _grants.Add(grant);
        var view = grant.NewView(GrantBytes)!;
        return new GrantedEptMmu(new EptMmu(view, ramBytes, ramBase) { Checker = checker, Events = events }, grant);
    }

    protected override void SetAfterGetUserPage(ISecondaryMmu mmu, Action<Gpa, Hfn>? hook) =>
        ((GrantedEptMmu)mmu).Ept.AfterGetUserPageHook = hook;

    protected override MappedPage? Lookup(ISecondaryMmu mmu, Gpa gpa)
    {
        var entry = ((GrantedEptMmu)mmu).Ept.Table.Lookup(gpa.PageNumber);
        return entry.IsPresent ? new MappedPage(entry.Frame, entry.IsDirty) : null;
    }

    /// <summary>The grant holds a reference to each page it hands out and recalls faulters by list, so even the 2008 order cannot free a frame under a fault.</summary>
    protected override bool Broken2008Races => false;

    /// <summary>The grant's PFN table holds one reference per mapped page.</summary>
    protected override bool HoldsPageReferences => true;

    /// <summary>The owner's start recalls and returns: the attacher's own sequence never has the owner's invalidation in flight.</summary>
    protected override bool SlotChangesWaitForHostInvalidations => false;

    private const ulong GrantBytes = 2UL << 30;

    /// <summary>The attacher's EPT MMU, disposed with the grant it maps.</summary>
    private sealed unsafe class GrantedEptMmu(EptMmu ept, Grant grant) : ISecondaryMmu, IDisposable
    {
        public EptMmu Ept => ept;
        public ulong RamBytes => ept.RamBytes;
        public SlotTable Slots => ept.Slots;
        public void AddSlot(MemorySlot slot) => ept.AddSlot(slot);
        public bool RemoveSlot(int id) => ept.RemoveSlot(id);
        public void AttachVcpu(VcpuLink vcpu) => ept.AttachVcpu(vcpu);
        public void DetachVcpu(VcpuLink vcpu) => ept.DetachVcpu(vcpu);
        public TranslateStatus Translate(VcpuLink vcpu, Gpa gpa, AccessKind kind, out byte* hostPage) => ept.Translate(vcpu, gpa, kind, out hostPage);

        public void Dispose()
        {
            ept.Dispose();
            grant.Remove();
        }
    }

    private sealed class NoMadvise : IHostMadvise
    {
        public static readonly NoMadvise Instance = new();
        public long PageOut(Hva start, ulong bytes) => throw new InvalidOperationException("the contract pages out through the host");
        public long DontNeed(Hva start, ulong bytes) => throw new InvalidOperationException("the contract discards through the host");
    }
}
