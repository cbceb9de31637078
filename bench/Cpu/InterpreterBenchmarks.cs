using BenchmarkDotNet.Attributes;
using Iced.Intel;
using ToyVmm.Cpu;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Bench.Cpu;

/// <summary>
/// Interpreter throughput on a CoreMark-like inner loop (loads, stores, ALU,
/// imul, compare-and-branch) over flat guest memory with an identity map.
/// Results are per guest instruction: MIPS = 1000 / (ns per op).
/// </summary>
[MemoryDiagnoser]
public class InterpreterBenchmarks
{
    private const ulong Code = 0x100000, Data = 0x200000, Ram = 16UL << 20;
    private const int Outer = 1000;
    // Per outer iteration: 2 + 256 * 11 + 2; plus 2 set-up instructions and the hlt.
    public const int Instructions = Outer * (2 + 256 * 11 + 2) + 3;

    private FlatGuestMemory _mem = null!;
    private Vcpu _cpu = null!;

    private sealed class NullHost : IVcpuHost
    {
        public void PortOut(Vcpu vcpu, ushort port, int size, uint value) { }
        public uint PortIn(Vcpu vcpu, ushort port, int size) => 0xFFFF_FFFF;
        public void Hypercall(Vcpu vcpu) { }
    }

    private sealed class Writer : CodeWriter
    {
        public readonly List<byte> Bytes = new();
        public override void WriteByte(byte value) => Bytes.Add(value);
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
        for (ulong i = 0; i < 1024; i++) W(Data + i * 8, 1000 + i);

        var a = new Assembler(64);
        Label outer = a.CreateLabel(), inner = a.CreateLabel(), skip = a.CreateLabel();
        a.mov(rsi, Data);
        a.mov(ecx, Outer);
        a.Label(ref outer);
        a.xor(eax, eax);
        a.xor(edx, edx);
        a.Label(ref inner);
        a.mov(r8, __qword_ptr[rsi + rdx * 8]);
        a.add(rax, r8);
        a.imul(r9, r8, 31);
        a.xor(rax, r9);
        a.cmp(r8, 100);
        a.jle(skip);
        a.sub(rax, 3);
        a.Label(ref skip);
        a.mov(__qword_ptr[rsi + rdx * 8 + 8192], rax);
        a.inc(edx);
        a.cmp(edx, 256);
        a.jne(inner);
        a.dec(ecx);
        a.jnz(outer);
        a.hlt();
        var w = new Writer();
        a.Assemble(w, Code);
        w.Bytes.ToArray().CopyTo(_mem.Bytes(new Gpa(Code), w.Bytes.Count));

        var link = new VcpuLink(0);
        _mem.AttachVcpu(link);
        _cpu = new Vcpu(0, _mem, link, new NullHost());
        _cpu.Cr0 = 0x80010033;
        _cpu.Cr4 = 0x620;
        _cpu.Efer = 0xD01;
        _cpu.Cr3 = top;
        _cpu.SetSegment(SegmentRegister.Cs, 0x08, 0);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _cpu.Dispose();
        _mem.Dispose();
    }

    [Benchmark(OperationsPerInvoke = Instructions)]
    public long CoreLoop()
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
