using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Secondary;
using Xunit.Abstractions;

namespace ToyVmm.Mmu.Tests.Secondary.Contract;

/// <summary>The secondary-MMU contract run against the EPT-like MMU.</summary>
public class EptMmuContractTests(ITestOutputHelper output) : SecondaryMmuContractTests(output)
{
    protected override ISecondaryMmu CreateMmu(IHostMemory host, ulong ramBytes, Hva ramBase, IMmuInvariantChecker checker, IMmuEventSink events) =>
        new EptMmu(host, ramBytes, ramBase) { Checker = checker, Events = events };

    protected override void SetAfterGetUserPage(ISecondaryMmu mmu, Action<Gpa, Hfn>? hook) =>
        ((EptMmu)mmu).AfterGetUserPageHook = hook;

    protected override MappedPage? Lookup(ISecondaryMmu mmu, Gpa gpa)
    {
        var entry = ((EptMmu)mmu).Table.Lookup(gpa.PageNumber);
        return entry.IsPresent ? new MappedPage(entry.Frame, entry.IsDirty) : null;
    }
}

/// <summary>
/// The secondary-MMU contract run against the EPT-like MMU with the vCPU pinned to a CPU
/// (<see cref="VcpuLink.PinnedCpu"/>): every test of the contract again, the shootdown's barrier
/// aimed at that CPU.
/// </summary>
public sealed class EptMmuPinnedContractTests(ITestOutputHelper output) : EptMmuContractTests(output)
{
    protected override int PinnedVcpuCpu => PinnedThread.FirstCpu;
}
