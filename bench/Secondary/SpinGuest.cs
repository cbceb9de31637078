using Iced.Intel;
using ToyVmm.Loader;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Bench.Secondary;

/// <summary>
/// A VM whose vCPUs run guest code forever (each increments a counter on its
/// own page and loops) until stopped: the "vCPUs running" of the invalidation
/// benchmarks, on the given secondary MMU.
/// </summary>
internal sealed class SpinGuest : IDisposable
{
    private const ulong Load = 0x100000;
    private readonly VirtualMachine _vm;
    private readonly Thread _runner;

    /// <param name="touchBase">When <paramref name="touchPages"/> is positive, every vCPU also reads
    /// one word of each of that many pages from this guest-physical address on, over and over
    /// (with some register arithmetic between the reads), so that they stay in its TLB.</param>
    public SpinGuest(VmMemory memory, int vcpus, ulong touchBase = 0, int touchPages = 0)
    {
        var a = new Assembler(64);
        var loop = a.CreateLabel();
        var inner = a.CreateLabel();
        a.mov(rax, rdi);                  // vCPU index
        a.shl(rax, 12);
        a.add(rax, (int)(Load + 0x10000));
        a.Label(ref loop);
        if (touchPages > 0)
        {
            a.mov(rsi, touchBase);
            a.mov(ecx, touchPages);
            a.Label(ref inner);
            a.mov(rdx, __qword_ptr[rsi]);
            a.add(rsi, 4096);
            for (int k = 0; k < 4; k++)      // register work between the accesses, as in compiled code
            {
                a.imul(rdx, rdx, 3);
                a.add(rdx, k);
            }
            a.inc(__qword_ptr[rax]);
            a.dec(ecx);
            a.jnz(inner);
        }
        else a.inc(__qword_ptr[rax]);
        a.jmp(loop);
        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), Load);
        byte[] code = ms.ToArray();
        var image = new ElfImage(code, Load, [new ElfSegment(0, new Gpa(Load), 0, (ulong)code.Length, 0x20000, true)]);
        _vm = VirtualMachine.Create(new VmConfig(memory.Access.RamBytes, vcpus), image, Stream.Null, _ => memory);
        _runner = new Thread(() => _vm.Run()) { IsBackground = true, Name = "spin-guest" };
        _runner.Start();
        // Wait until every vCPU is in guest mode.
        var spin = new SpinWait();
        while (_vm.Links.Count(l => l is { Mode: VcpuMode.InGuest }) < vcpus) spin.SpinOnce();
    }

    public VcpuLink[] Links => [.. _vm.Links.Select(l => l!)];

    public void Dispose()
    {
        _vm.Stop(VmOutcome.Interrupted, "benchmark done");
        _runner.Join();
        _vm.Dispose();
    }
}
