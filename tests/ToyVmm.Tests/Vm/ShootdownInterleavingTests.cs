using Iced.Intel;
using ToyVmm.Cpu;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Tests.Cpu;
using ToyVmm.Vm;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Vm;

/// <summary>
/// Forced interleaving of a host page-out with a vCPU that holds a host pointer
/// in the middle of an instruction (translated, not yet stored), on the real
/// host and EPT-like MMU with the checker on. The shootdown must wait for that
/// vCPU; a TLB that claims quiescence at the wrong time loses the store.
/// </summary>
public sealed unsafe class ShootdownInterleavingTests
{
    private const ulong Ram = 16UL << 20;
    private const ulong Code = 0x100000, Data = 0x300000;
    private const ulong Value = 0x1234_5678_9abc_def0;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    /// <summary>The vCPU's own TLB, except that it always claims to be at a quiet instruction.</summary>
    private sealed class AlwaysQuiescent(IVcpuTlb inner) : IVcpuTlb
    {
        public bool MayHold(ulong firstGfn, ulong lastGfn) => inner.MayHold(firstGfn, lastGfn);
        public void ShootDown(ulong firstGfn, ulong lastGfn) => inner.ShootDown(firstGfn, lastGfn);
        public bool IsQuiescent => true;
        public bool Maps(ulong gfn, nint hostPage) => inner.Maps(gfn, hostPage);
    }

    private static ulong RunStoreRacingPageOut(bool lyingTlb, out ShootdownCounts counts, out int violations)
    {
        using var backing = new HostBackedMemory(Ram, 1, new GuestMemoryConfig(Ram, Check: true));
        var layout = BootLayout.Create(Ram, 1);
        using (var writer = new GuestPhysicalWriter(backing.Mmu))
        {
            writer.Write(new Gpa(Code), CpuFixture.Assemble(a =>
            {
                a.mov(rbx, Data);
                a.mov(rax, Value);
                a.mov(__qword_ptr[rbx], rax);
                a.hlt();
            }, Code));
            BootState.BuildTables(writer, layout);
        }
        var link = new VcpuLink(0);
        backing.Mmu.AttachVcpu(link);
        backing.Checker!.WatchVcpus(() => [link]);
        using var vcpu = new Vcpu(0, backing.Mmu, link, new ToyVmm.Tests.Cpu.TestExits());
        BootState.ApplyEntryState(vcpu, layout, Code);
        if (lyingTlb) link.AttachTlb(new AlwaysQuiescent(vcpu));
        using var paused = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        vcpu.BeforeSlowWriteHook = gpa =>
        {
            if (gpa >> 12 != Data >> 12 || paused.IsSet) return;
            paused.Set();
            release.Wait();
        };
        VcpuExit exit = default;
        var run = new Thread(() => exit = vcpu.Run(1_000_000));
        run.Start();
        Thread? pageOut = null;
        try
        {
            Assert.True(paused.Wait(Patience));
            // The vCPU has translated the data page and is about to store through the pointer.
            pageOut = new Thread(() => backing.Management.PageOut(new Gpa(Data), Page.Size));
            pageOut.Start();
            if (!lyingTlb)
            {
                // The page-out reaches the last shootdown step (waiting for the vCPU) however
                // slowly the machine runs it, and stays there while the store is in flight.
                Assert.True(SpinWait.SpinUntil(() => backing.Shootdowns.Waited == 1, Patience), "the page-out never waited for the vCPU");
                Assert.False(pageOut.Join(TimeSpan.FromMilliseconds(200)), "the page-out must wait for the store in flight");
            }
            else Assert.True(pageOut.Join(Patience));
        }
        finally
        {
            // A failed assertion above must not leave the vCPU parked in the hook: the
            // page-out would wait for it for ever and disposing the memory would wait for the page-out.
            release.Set();
        }
        Assert.True(run.Join(Patience));
        Assert.True(pageOut.Join(Patience));
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        counts = backing.Shootdowns;
        violations = backing.Checker.ViolationCount;
        var bytes = new byte[8];
        using (var reader = new GuestPhysicalWriter(backing.Mmu)) reader.Read(new Gpa(Data), bytes);
        return BitConverter.ToUInt64(bytes);
    }

    [Fact]
    public void PageOut_WhileAVcpuStoresThroughItsPointer_WaitsAndKeepsTheStore()
    {
        ulong value = RunStoreRacingPageOut(lyingTlb: false, out var counts, out int violations);
        Assert.Equal(Value, value);
        Assert.Equal(1, counts.Waited);
        Assert.Equal(0, violations);
    }

    [Fact]
    public void PageOut_WithATlbThatClaimsQuiescenceMidStore_LosesTheStore()
    {
        // What the quiet-instruction check is for: shot down "from outside" while the
        // pointer is live, the store lands in a frame the host already wrote to swap and freed.
        ulong value = RunStoreRacingPageOut(lyingTlb: true, out var counts, out _);
        Assert.Equal(1, counts.ShotDown);
        Assert.NotEqual(Value, value);
    }

    /// <summary>
    /// A vCPU descheduled inside a plain load of the page being paged out (it has taken the host
    /// pointer, not yet checked its entry): the shootdown completes it from outside without waiting,
    /// and when it runs again its check sees the entry cleared, discards what it read through the
    /// stale pointer and reads the page again through the slow path (swap-in), with the checker on.
    /// </summary>
    [Fact]
    public void PageOut_WhileAVcpuIsParkedInsideALoadOfThePage_CompletesFromOutside_AndTheLoadRetries()
    {
        using var backing = new HostBackedMemory(Ram, 1, new GuestMemoryConfig(Ram, Check: true));
        var layout = BootLayout.Create(Ram, 1);
        using (var writer = new GuestPhysicalWriter(backing.Mmu))
        {
            writer.Write(new Gpa(Code), CpuFixture.Assemble(a =>
            {
                a.mov(rbx, Data);                        // op 0
                a.mov(rax, __qword_ptr[rbx]);            // op 1: the load
                a.hlt();
            }, Code));
            writer.Write(new Gpa(Data), BitConverter.GetBytes(Value));
            BootState.BuildTables(writer, layout);
        }
        var link = new VcpuLink(0);
        backing.Mmu.AttachVcpu(link);
        backing.Checker!.WatchVcpus(() => [link]);
        using var vcpu = new Vcpu(0, backing.Mmu, link, new ToyVmm.Tests.Cpu.TestExits());
        BootState.ApplyEntryState(vcpu, layout, Code);
        Assert.Equal(VcpuExitKind.Halted, vcpu.Run(1_000).Kind);   // the data page is in its TLB now
        CpuState* s = vcpu.State;
        TlbEntry* e = Mem.Entry(s->TlbRead, Data);
        ulong tag = Mem.Tag(s, Data, 8);
        Assert.Equal(tag, e->Tag);
        byte* p = (byte*)(Data + (ulong)e->Addend);   // the pointer the load has taken
        Block* b = CodeCache.For(backing.Mmu).Lookup(Code, Code);
        Assert.True(b != null);
        // Back in guest mode on this thread and descheduled inside op 1, its address published.
        link.EnterGuest();
        s->CurBlock = b;
        s->CurOp = Block.OpsOf(b) + 1;
        s->AccessVa = Data;
        try
        {
            var pageOut = new Thread(() => backing.Management.PageOut(new Gpa(Data), Page.Size));
            pageOut.Start();
            Assert.True(pageOut.Join(Patience), "the page-out must not wait for a vCPU parked in a load");
            var counts = backing.Shootdowns;
            Assert.Equal(1, counts.ShotDown);
            Assert.Equal(0, counts.Waited);
            // The vCPU runs again: its check finds the entry cleared, so the value is discarded...
            Assert.False(Mem.LoadChecked<S64>(e, tag, p, out _));
            // ...and the load goes through the slow path: swapped in, the guest's value.
            Assert.Equal(Value, Mem.Read<S64>(s, Data));
            Assert.Equal(0, backing.Checker.ViolationCount);
        }
        finally
        {
            s->CurOp = null;
            s->CurBlock = null;
            link.ExitGuest();
        }
    }
}
