using ToyVmm.Loader;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Tests.Vm;
using ToyVmm.Vm;
using Xunit;
using Xunit.Abstractions;

namespace ToyVmm.Tests.Guests;

/// <summary>
/// The memory, SMP, page-storm and kernel guests under both secondary MMUs at 1, 2
/// and 4 vCPUs, with a host pool of a quarter of guest RAM, forced page-outs every
/// 2 ms and the invariant checker on: zero violations, and the console equal to the
/// same guest on flat memory with the same vCPUs (and to the native twin where the
/// manifest's vCPU count is the one run). The kernel guest brings its own page tables,
/// CR3 switches, NX, WP, A/D bits and CPL 3, which the shadow MMU must follow.
/// </summary>
public sealed class BothMmuGuestTests(ITestOutputHelper output)
{
    public static TheoryData<string, SecondaryMmuKind, int> Quick => Cases(["smp", "pagestorm", "kernel"], [SecondaryMmuKind.Shadow], [2]);

    public static TheoryData<string, SecondaryMmuKind, int> All =>
        Cases(["memhot", "smp", "pagestorm", "kernel"], [SecondaryMmuKind.Ept, SecondaryMmuKind.Shadow], [1, 2, 4]);

    private static TheoryData<string, SecondaryMmuKind, int> Cases(string[] guests, SecondaryMmuKind[] mmus, int[] vcpus)
    {
        var data = new TheoryData<string, SecondaryMmuKind, int>();
        foreach (var g in guests) foreach (var m in mmus) foreach (var v in vcpus) data.Add(g, m, v);
        return data;
    }

    [Theory]
    [MemberData(nameof(Quick))]
    public void Guest_ShadowMmuUnderPressure_MatchesFlatMemoryWithNoViolation(string guest, SecondaryMmuKind mmu, int vcpus) =>
        RunAndCompare(guest, mmu, vcpus);

    [Theory]
    [Trait("Category", "Long")]
    [MemberData(nameof(All))]
    public void Guest_EveryMmuAndVcpuCountUnderPressure_MatchesFlatMemoryWithNoViolation(string guest, SecondaryMmuKind mmu, int vcpus) =>
        RunAndCompare(guest, mmu, vcpus);

    private void RunAndCompare(string name, SecondaryMmuKind mmu, int vcpus)
    {
        var entry = GuestManifest.Get(name);
        ulong ram = (ulong)entry.MemMib << 20;
        string elf = GuestManifest.RequireBuilt(entry.Elf);

        var flat = AsmGuest.Execute(ElfLoader.LoadFile(elf, ram), vcpus, ram, long.MaxValue, TimeSpan.FromMinutes(10));
        Assert.True(flat.Result.IsNormalExit, $"flat: {flat.Result.Outcome}: {flat.Result.Message}");

        var image = ElfLoader.LoadFile(elf, ram);
        using var backing = new HostBackedMemory(ram, vcpus, new GuestMemoryConfig(
            HostMemoryBytes: ram / 4, Check: true, Seed: 5, Mmu: mmu,
            PageOut: [new PeriodicPageOut(TimeSpan.FromMilliseconds(2), null, PageOutPick.Random)]));
        using var console = new MemoryStream();
        using var vm = VirtualMachine.Create(new VmConfig(ram, vcpus, InstructionLimit: 20_000_000_000), image, console, _ => backing.Memory);
        backing.Checker!.WatchVcpus(() => [.. vm.Links.OfType<VcpuLink>()]);
        backing.Checker.Violated += v => vm.Stop(VmOutcome.InvariantViolation, v.ToString());
        var result = vm.Run();
        backing.StopBackground();
        string text = System.Text.Encoding.Latin1.GetString(console.ToArray());

        foreach (var line in backing.Summary()) output.WriteLine(line);
        Assert.True(result.IsNormalExit, $"{name} {mmu} {vcpus} vCPUs: {result.Outcome}: {result.Message}\n{text}");
        Assert.Null(backing.Checker.FirstViolation);
        Assert.Equal(flat.Result.GuestStatus, result.GuestStatus);
        Assert.Equal(flat.Console, text);
        if (name == "kernel")
            foreach (var line in new[] { "invlpg after remap reads the new frame", "invlpg after unmap faults again",
                         "CR3 switch between two address spaces", "write to read-only page -> #PF P|W, then allowed",
                         "accessed bit set by the read, dirty bit clear", "dirty bit set by the write",
                         "user read of a kernel page -> #PF P|U, task ended" })
                Assert.Contains($"  {line}: ok\n", text);
        if (entry.HasNative && vcpus == entry.Vcpus)
        {
            var (status, native) = ShippedGuestTests.RunNative(GuestManifest.RequireBuilt(entry.Native));
            Assert.Equal(native, text);
            Assert.Equal(status, result.GuestStatus);
        }
        if (mmu == SecondaryMmuKind.Shadow)
        {
            var counts = backing.ShadowCounts!.Value;
            Assert.True(counts.Fills > 0, "the shadow MMU filled nothing: the guest ran with paging off?");
            // The kernel guest edits its own page tables (demand paging, invlpg, a second address
            // space): those writes must have trapped, or its later accesses would have used stale entries.
            if (name == "kernel") Assert.True(counts.WriteProtectTraps > 0 && counts.RootsCached >= 2, counts.ToString());
        }
    }
}
