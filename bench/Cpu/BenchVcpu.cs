using Iced.Intel;
using ToyVmm.Cpu;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Bench.Cpu;

/// <summary>
/// One vCPU on flat guest memory with an identity map of the low 16 MiB (2 MiB
/// pages) in the reserved top, running code assembled at <paramref name="code"/>:
/// the fixture of the interpreter micro-benchmarks.
/// </summary>
internal static class BenchVcpu
{
    private sealed class NullExits : IVmExitHandler
    {
        public void PortOut(Vcpu vcpu, ushort port, int size, uint value) { }
        public uint PortIn(Vcpu vcpu, ushort port, int size) => 0xFFFF_FFFF;
        public void Hypercall(Vcpu vcpu) { }
    }

    public static (FlatGuestMemory Memory, Vcpu Cpu) Create(ulong ram, ulong code, Assembler program)
    {
        var mem = new FlatGuestMemory(ram);
        void W(ulong a, ulong v) => BitConverter.TryWriteBytes(mem.Bytes(new Gpa(a), 8), v);
        ulong top = ram - 0x100000;
        W(top, (top + 0x1000) | 7);
        W(top + 0x1000, (top + 0x2000) | 7);
        for (ulong i = 0; i < 8; i++) W(top + 0x2000 + i * 8, (i << 21) | 0x87);
        using var ms = new MemoryStream();
        program.Assemble(new StreamCodeWriter(ms), code);
        ms.ToArray().CopyTo(mem.Bytes(new Gpa(code), (int)ms.Length));

        var link = new VcpuLink(0);
        mem.AttachVcpu(link);
        var cpu = new Vcpu(0, mem, link, new NullExits()) { Cr0 = 0x80010033, Cr4 = 0x620, Efer = 0xD01, Cr3 = top };
        cpu.SetSegment(SegmentRegister.Cs, 0x08, 0);
        return (mem, cpu);
    }

    /// <summary>Run from <paramref name="rip"/> to the final hlt; checks the retired count.</summary>
    public static long RunToHalt(Vcpu cpu, ulong rip, long expected)
    {
        long before = cpu.InstructionsRetired;
        cpu.Rip = rip;
        var exit = cpu.Run();
        if (exit.Kind != VcpuExitKind.Halted) throw new InvalidOperationException(exit.ToString());
        long n = cpu.InstructionsRetired - before;
        if (n != expected) throw new InvalidOperationException($"retired {n}, expected {expected}");
        return n;
    }
}
