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


    [GlobalSetup]
    public void Setup()
    {
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
        (_mem, _cpu) = BenchVcpu.Create(Ram, Code, a);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _cpu.Dispose();
        _mem.Dispose();
    }

    [Benchmark(OperationsPerInvoke = Instructions)]
    public long Run()
        => BenchVcpu.RunToHalt(_cpu, Code, Instructions);
}
