using ToyVmm.Loader;
using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;
using Xunit;
using Xunit.Abstractions;

namespace ToyVmm.Tests.Guests;

/// <summary>
/// The grant guest as two VMs of one host, one on EPT and one on the shadow MMU (the
/// command line gives every VM the same MMU, so this builds them as the runner does):
/// host pool a quarter of their RAM, forced page-outs every 2 ms, checker on. Whichever
/// VM makes the grant first owns it, so both orders are run.
/// </summary>
public sealed class MixedMmuGrantTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(SecondaryMmuKind.Ept, SecondaryMmuKind.Shadow)]
    [InlineData(SecondaryMmuKind.Shadow, SecondaryMmuKind.Ept)]
    public void GrantsGuest_OneVmOnEachMmuUnderPressure_SharesTheGrantWithNoViolation(SecondaryMmuKind first, SecondaryMmuKind second)
    {
        var entry = GuestManifest.Get("grants");
        string elf = GuestManifest.RequireBuilt(entry.Elf);
        ulong ram = (ulong)entry.MemMib << 20;
        SecondaryMmuKind[] mmus = [first, second];
        using var shared = new SharedHost(new HostMemoryOptions { HostMemoryBytes = ram / 2, SwapBytes = 2 * ram + (16UL << 20) });
        var memories = new List<HostBackedMemory>();
        var vms = new List<VirtualMachine>();
        var consoles = new List<MemoryStream>();
        try
        {
            for (int i = 0; i < 2; i++)
            {
                var memory = new HostBackedMemory(shared, i, ram, 1, new GuestMemoryConfig(
                    HostMemoryBytes: ram / 2, Check: true, Seed: 3 + i, Mmu: mmus[i],
                    PageOut: [new PeriodicPageOut(TimeSpan.FromMilliseconds(2), 32, PageOutPick.Random)]));
                memories.Add(memory);
                var console = new MemoryStream();
                consoles.Add(console);
                var vm = VirtualMachine.Create(new VmConfig(ram, 1, InstructionLimit: 20_000_000_000), ElfLoader.LoadFile(elf, ram), console, _ => memory.Memory);
                memory.Checker!.WatchVcpus(() => [.. vm.Links.OfType<VcpuLink>()]);
                memory.Checker.Violated += v => vm.Stop(VmOutcome.InvariantViolation, v.ToString());
                vms.Add(vm);
            }
            var results = new VmResult?[2];
            var threads = Enumerable.Range(0, 2).Select(i => new Thread(() => results[i] = vms[i].Run())).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            foreach (var m in memories) m.StopBackground();
            var text = consoles.Select(c => System.Text.Encoding.Latin1.GetString(c.ToArray())).ToList();
            for (int i = 0; i < 2; i++)
            {
                foreach (var line in memories[i].Summary()) output.WriteLine($"vm{i} ({mmus[i]}): {line}");
                Assert.True(results[i]!.IsNormalExit, $"vm{i} ({mmus[i]}): {results[i]!.Outcome}: {results[i]!.Message}\n{text[i]}");
                Assert.Equal(0, results[i]!.GuestStatus);
                Assert.DoesNotContain("FAIL", text[i]);
                Assert.Null(memories[i].Checker!.FirstViolation);
            }
            Assert.Single(text, t => t.Contains("grants: owner shares its grant with another VM"));
            Assert.Single(text, t => t.Contains("grants: user attached the grant of another VM"));
            Assert.Single(text, t => t.Contains("lock cmpxchg from two VMs counts every increment: ok"));
        }
        finally
        {
            foreach (var vm in vms) vm.Dispose();
            foreach (var m in memories) m.Dispose();
        }
    }
}
