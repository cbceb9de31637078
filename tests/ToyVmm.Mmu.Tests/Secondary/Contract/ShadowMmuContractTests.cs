using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Mmu.Secondary.Shadow;
using Xunit.Abstractions;

namespace ToyVmm.Mmu.Tests.Secondary.Contract;

/// <summary>
/// The secondary-MMU contract run against the shadow MMU: the contract translates
/// guest-physical pages, which the shadow MMU serves through its direct role, and
/// looks entries up through its reverse map.
/// </summary>
public class ShadowMmuContractTests(ITestOutputHelper output) : SecondaryMmuContractTests(output)
{
    protected override ISecondaryMmu CreateMmu(IHostMemory host, ulong ramBytes, Hva ramBase, IMmuInvariantChecker checker, IMmuEventSink events) =>
        new ShadowMmu(host, ramBytes, ramBase) { Checker = checker, Events = events };

    protected override void SetAfterGetUserPage(ISecondaryMmu mmu, Action<Gpa, Hfn>? hook) =>
        ((ShadowMmu)mmu).AfterGetUserPageHook = hook;

    protected override MappedPage? Lookup(ISecondaryMmu mmu, Gpa gpa) =>
        ((ShadowMmu)mmu).TryLookup(gpa, out var frame, out bool dirty) ? new MappedPage(frame, dirty) : null;
}

/// <summary>
/// The secondary-MMU contract run against the shadow MMU with the vCPU pinned to a CPU
/// (<see cref="VcpuLink.PinnedCpu"/>): every test of the contract again, the shootdown's barrier
/// aimed at that CPU.
/// </summary>
public sealed class ShadowMmuPinnedContractTests(ITestOutputHelper output) : ShadowMmuContractTests(output)
{
    protected override int PinnedVcpuCpu => PinnedThread.FirstCpu;
}
