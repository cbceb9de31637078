using ToyVmm.Mmu.Grants;
using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Mmu.Tests.Secondary;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Grants;

/// <summary>Which host the VMs run over: the simulated kernel, or the small test host.</summary>
public enum GrantHostKind { Real, Small }

/// <summary>
/// Two VMs on one host for grant tests: each with its RAM in the host, an EPT MMU, a
/// manager, a party to one grant table and a vCPU link, and one checker watching
/// both. Over the real simulated kernel (two address spaces) or the small test
/// host (one page table, two ranges of it).
/// </summary>
internal sealed unsafe class GrantFixture : IDisposable
{
    public const ulong Ram = 8UL << 20;          // 8 MiB each: the top 1 MiB is the VMM's
    private readonly HostMemory? _host;
    private readonly TestHost? _small;

    public GrantFixture(GrantHostKind kind, int frames = 1024)
    {
        Checker = new MmuInvariantChecker();
        Checker.WatchVcpus(() => [.. (Vms ?? []).Select(v => v.Vcpu)]);
        if (kind == GrantHostKind.Small)
        {
            _small = new TestHost(frames) { FrameFreed = Checker.OnFrameFree };
            Vms = [Vm(0, _small, _small, TestHost.RamBase), Vm(1, _small, _small, TestHost.RamBase.Add(1UL << 30))];
        }
        else
        {
            _host = NewHost(frames);
            _host.FrameFreed = Checker.OnFrameFree;
            Vms = [.. Enumerable.Range(0, 2).Select(i =>
            {
                var mm = _host.CreateAddressSpace();
                mm.Notifiers.Protocol = NotifierProtocols.Of(NotifierProtocol.Sequence);
                var binding = new SecondaryHostBinding(mm);
                return Vm(i, binding, binding, mm.Map(Ram, HostProtection.ReadWrite), mm);
            })];
        }
    }

    public GrantTable Table { get; } = new();
    public MmuInvariantChecker Checker { get; }
    public TestVm[] Vms { get; }
    public TestHost? Small => _small;
    public HostMemory? Host => _host;

    private TestVm Vm(int index, IHostMemory host, IHostMadvise madvise, Hva ram, HostAddressSpace? space = null)
    {
        var mmu = new EptMmu(host, Ram, ram) { Checker = Checker };
        var manager = new GuestMemoryManager(madvise, mmu);
        SecondaryMmuFactory factory = (h, bytes, hva) => new EptMmu(h, bytes, hva) { Checker = Checker };
        var vm = new GrantVm(Table, index, host, madvise, mmu, manager, ram, factory);
        var link = new VcpuLink(index);
        vm.Router.AttachVcpu(link);
        return new TestVm(vm, mmu, link, madvise, ram, space);
    }

    public void Dispose()
    {
        foreach (var vm in Vms) Table.VmEnded(vm.Grants);
        foreach (var vm in Vms) { vm.Space?.Dispose(); vm.Mmu.Dispose(); }
        _host?.Dispose();
        _small?.Dispose();
    }
}

/// <summary>One VM of a <see cref="GrantFixture"/>.</summary>
internal sealed unsafe record TestVm(GrantVm Grants, EptMmu Mmu, VcpuLink Vcpu, IHostMadvise Madvise, Hva Ram, HostAddressSpace? Space)
{
    /// <summary>The host page behind a guest page, through the router as a vCPU gets it.</summary>
    public byte* Page(ulong gpa, AccessKind kind = AccessKind.Write)
    {
        var status = Grants.Router.Translate(Vcpu, new Gpa(gpa), kind, out byte* p);
        if (status != TranslateStatus.Ok) throw new InvalidOperationException($"translate gpa:0x{gpa:x}: {status}");
        return p;
    }

    public ulong Read(ulong gpa) => *(ulong*)(Page(gpa, AccessKind.Read) + (gpa & 0xFFF));

    public void Write(ulong gpa, ulong value) => *(ulong*)(Page(gpa) + (gpa & 0xFFF)) = value;

    /// <summary>Clear the host PTEs of the VM's own pages [gpa, +bytes) as reclaim's unmap does, through the notifiers.</summary>
    public void Evict(ulong gpa, ulong bytes) => Madvise.DontNeed(Ram.Add(gpa), bytes);

    /// <summary>Page the VM's own pages [gpa, +bytes) out (contents kept), through the notifiers.</summary>
    public void PageOut(ulong gpa, ulong bytes) => Madvise.PageOut(Ram.Add(gpa), bytes);
}
