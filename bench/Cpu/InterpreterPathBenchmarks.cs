using BenchmarkDotNet.Attributes;
using Iced.Intel;
using ToyVmm.Cpu;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Bench.Cpu;

/// <summary>
/// The interpreter's three hot paths in isolation, per guest instruction:
/// <list type="bullet">
/// <item><c>Dispatch</c>: register-only ALU ops (handler dispatch and nothing else);</item>
/// <item><c>TlbHit</c>: loads from one page (the software TLB's fast path);</item>
/// <item><c>BlockCacheHit</c>: a chain of one-instruction blocks (<c>jmp</c> to the next),
/// so every instruction ends a block and looks the next one up in the block cache.</item>
/// </list>
/// Each loop runs <see cref="Outer"/> times over 16 such instructions plus the loop's
/// <c>dec</c>/<c>jnz</c>; results are per retired guest instruction.
/// </summary>
public class InterpreterPathBenchmarks
{
    private const ulong Code = 0x100000, Data = 0x200000, Ram = 16UL << 20;
    private const int Outer = 20_000, Body = 16;
    private const int Instructions = Outer * (Body + 2) + 3;   // plus 2 set-up instructions and the hlt

    [Params("Dispatch", "TlbHit", "BlockCacheHit")]
    public string Path { get; set; } = "Dispatch";

    private FlatGuestMemory _mem = null!;
    private Vcpu _cpu = null!;

    private sealed class NullHost : IVcpuHost
    {
        public void PortOut(Vcpu vcpu, ushort port, int size, uint value) { }
        public uint PortIn(Vcpu vcpu, ushort port, int size) => 0xFFFF_FFFF;
        public void Hypercall(Vcpu vcpu) { }
    }

    [GlobalSetup]
    public void Setup()
    {
        _mem = new FlatGuestMemory(Ram);
        void W(ulong a, ulong v) => BitConverter.TryWriteBytes(_mem.Bytes(new Gpa(a), 8), v);
        ulong top = Ram - 0x100000;
        W(top, (top + 0x1000) | 7);
        W(top + 0x1000, (top + 0x2000) | 7);
        for (ulong i = 0; i < 8; i++) W(top + 0x2000 + i * 8, (i << 21) | 0x87);

        var a = new Assembler(64);
        var loop = a.CreateLabel();
        a.mov(rsi, Data);
        a.mov(ecx, Outer);
        a.Label(ref loop);
        for (int i = 0; i < Body; i++)
        {
            switch (Path)
            {
                case "Dispatch":
                    if (i % 2 == 0) a.add(rax, rbx); else a.xor(rdx, rax);
                    break;
                case "TlbHit":
                    a.mov(r8, __qword_ptr[rsi + i * 8]);
                    break;
                default:
                    var next = a.CreateLabel();
                    a.jmp(next);
                    a.Label(ref next);
                    break;
            }
        }
        a.dec(ecx);
        a.jnz(loop);
        a.hlt();
        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), Code);
        ms.ToArray().CopyTo(_mem.Bytes(new Gpa(Code), (int)ms.Length));

        var link = new VcpuLink(0);
        _mem.AttachVcpu(link);
        _cpu = new Vcpu(0, _mem, link, new NullHost())
        {
            Cr0 = 0x80010033, Cr4 = 0x620, Efer = 0xD01, Cr3 = top,
        };
        _cpu.SetSegment(SegmentRegister.Cs, 0x08, 0);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _cpu.Dispose();
        _mem.Dispose();
    }

    [Benchmark(OperationsPerInvoke = Instructions)]
    public long Run()
    {
        long before = _cpu.InstructionsRetired;
        _cpu.Rip = Code;
        var exit = _cpu.Run();
        if (exit.Kind != VcpuExitKind.Halted) throw new InvalidOperationException(exit.ToString());
        long n = _cpu.InstructionsRetired - before;
        if (n != Instructions) throw new InvalidOperationException($"retired {n}, expected {Instructions}");
        return n;
    }
}
