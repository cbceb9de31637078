using ToyVmm.Mmu;
using ToyVmm.Vm;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Vm;

/// <summary>
/// A frame that held guest data is zeroed before it backs another guest page: a guest
/// fills pages with a pattern, DISCARDs them (the host frees their frames), then reads
/// fresh pages (zero-filled from the frames just freed) and the discarded ones again;
/// every byte must be zero. The test checks that the fresh pages really got the freed
/// frames, so it would catch a host that hands a frame out without zeroing it.
/// </summary>
public class FrameReuseIsolationTests
{
    private const ulong Ram = 16UL << 20;
    private const ulong Filled = 0x400000, Fresh = 0x600000;
    private const int Pages = 32;

    [Fact]
    public void Run_DiscardedPatternPagesThenFreshPages_FreshPagesReadZeroOnReusedFrames()
    {
        var image = AsmGuest.Build(a =>
        {
            var sum = a.CreateLabel();
            var zero = a.CreateLabel();
            a.mov(rdi, Filled);
            a.mov(rcx, (ulong)Pages * 512);
            a.mov(rax, 0xA5A5A5A5A5A5A5A5UL);
            a.rep.stosq();
            a.mov(eax, 0x101u);            // DISCARD the filled pages: their frames go back to the host
            a.mov(rbx, Filled);
            a.mov(rcx, (ulong)Pages * 4096);
            a.vmcall();
            a.ExpectEqual(rax, Pages, 3);
            // OR every word of the fresh pages, then of the discarded ones, into r8.
            a.xor(r8, r8);
            a.mov(rsi, Fresh);
            a.mov(rcx, (ulong)Pages * 512);
            a.Label(ref sum);
            a.or(r8, __qword_ptr[rsi]);
            a.add(rsi, 8);
            a.dec(rcx);
            a.jnz(sum);
            a.mov(rsi, Filled);
            a.mov(rcx, (ulong)Pages * 512);
            a.Label(ref zero);
            a.or(r8, __qword_ptr[rsi]);
            a.add(rsi, 8);
            a.dec(rcx);
            a.jnz(zero);
            a.ExpectEqual(r8, 0, 1);
            a.Exit(0);
        }, Ram);
        using var backing = new HostBackedMemory(Ram, 1, new GuestMemoryConfig(HostMemoryBytes: Ram));
        var freed = new HashSet<uint>();
        backing.Host.FrameFreed = f => { lock (freed) freed.Add((uint)f.Value); };
        using var vm = VirtualMachine.Create(new VmConfig(Ram, 1, 50_000_000), image, new MemoryStream(), _ => backing.Memory);
        var result = vm.Run();
        backing.StopBackground();
        Assert.Equal(VmOutcome.ExitPort, result.Outcome);
        Assert.Equal(0, result.GuestStatus);
        int reused = 0;
        for (ulong p = 0; p < Pages; p++)
        {
            var pte = backing.Space.QueryPte(backing.RamHva.Add(Fresh + p * Page.Size));
            if (pte.IsPresent && freed.Contains(pte.Frame)) reused++;
        }
        Assert.True(reused > 0, "the fresh pages were backed by frames the discard freed (else this test proves nothing)");
    }
}
