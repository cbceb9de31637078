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



    [GlobalSetup]
    public void Setup()
    {
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
        (_mem, _cpu) = BenchVcpu.Create(Ram, Code, a);
        for (ulong i = 0; i < 1024; i++) BitConverter.TryWriteBytes(_mem.Bytes(new Gpa(Data + i * 8), 8), 1000 + i);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _cpu.Dispose();
        _mem.Dispose();
    }

    [Benchmark(OperationsPerInvoke = Instructions)]
    public long CoreLoop()
        => BenchVcpu.RunToHalt(_cpu, Code, Instructions);
}
