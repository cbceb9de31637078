using System.Text;
using Iced.Intel;
using ToyVmm.Cpu;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Tests.Cpu;

/// <summary>Records port I/O and hypercalls for tests.</summary>
public sealed class TestExits : IVmExitHandler
{
    public readonly StringBuilder Console = new();
    public readonly List<(ushort Port, int Size, uint Value)> Outs = new();
    public uint InValue = 0xFFFF_FFFF;
    public int Hypercalls;
    public Action<Vcpu>? OnHypercall;

    public void PortOut(Vcpu vcpu, ushort port, int size, uint value)
    {
        lock (Outs)
        {
            Outs.Add((port, size, value));
            if (port == 0xE9) Console.Append((char)(byte)value);
        }
        if (port == 0xF4) vcpu.Link.RequestStop();
    }

    public uint PortIn(Vcpu vcpu, ushort port, int size) => InValue;

    public void Hypercall(Vcpu vcpu)
    {
        Interlocked.Increment(ref Hypercalls);
        if (OnHypercall != null) OnHypercall(vcpu);
        else vcpu.SetGpr(Gpr.Rax, unchecked((ulong)-1000L));
    }
}

/// <summary>
/// A guest in a <see cref="FlatGuestMemory"/> set up as GUEST-ABI.md describes: identity map of
/// all RAM with 2 MiB pages (page tables and GDT in the top 1 MiB), long mode, CPL 0, flat segments.
/// Code is assembled with Iced at <see cref="CodeBase"/>.
/// </summary>
public sealed class CpuFixture : IDisposable
{
    public const ulong CodeBase = 0x100000;
    public const ulong DataBase = 0x200000;
    public readonly ulong RamBytes;
    public readonly FlatGuestMemory Memory;
    public readonly TestExits Exits = new();
    public readonly ulong Pml4, Gdt;
    private readonly List<Vcpu> _vcpus = new();

    public CpuFixture(ulong ramBytes = 16 << 20)
    {
        RamBytes = ramBytes;
        Memory = new FlatGuestMemory(ramBytes);
        // As VirtualMachine wires it: contents replaced behind the vCPUs' back make decoded code stale.
        Memory.ContentsReplaced += (start, bytes) => CodeCache.ContentsReplaced(Memory, start, bytes);
        ulong top = ramBytes - 0x100000;
        Pml4 = top;
        ulong pdpt = top + 0x1000;
        ulong pd = top + 0x2000;   // one PD per GiB of RAM
        W64(Pml4, pdpt | 0x7);
        ulong gib = (ramBytes + (1UL << 30) - 1) >> 30;
        for (ulong g = 0; g < gib; g++)
        {
            W64(pdpt + g * 8, (pd + g * 0x1000) | 0x7);
            for (ulong i = 0; i < 512 && (g << 30) + (i << 21) < ramBytes; i++)
                W64(pd + g * 0x1000 + i * 8, ((g << 30) + (i << 21)) | 0x87);
        }
        Gdt = top + 0x80000;
        W64(Gdt + 0x00, 0);
        W64(Gdt + 0x08, 0x00AF9A000000FFFF);   // 64-bit code, DPL 0
        W64(Gdt + 0x10, 0x00CF92000000FFFF);   // data, DPL 0
        W64(Gdt + 0x18, 0x00CFF2000000FFFF);   // data, DPL 3 (sysret SS = STAR[63:48]+8 with base 0x10)
        W64(Gdt + 0x20, 0x00AFFA000000FFFF);   // 64-bit code, DPL 3
    }

    public void W64(ulong gpa, ulong v) => BitConverter.TryWriteBytes(Memory.Bytes(new Gpa(gpa), 8), v);
    public ulong R64(ulong gpa) => BitConverter.ToUInt64(Memory.Bytes(new Gpa(gpa), 8));
    public byte[] Read(ulong gpa, int n) => Memory.Bytes(new Gpa(gpa), n).ToArray();
    public void Write(ulong gpa, ReadOnlySpan<byte> b) => b.CopyTo(Memory.Bytes(new Gpa(gpa), b.Length));

    public static byte[] Assemble(Action<Assembler> build, ulong rip = CodeBase)
    {
        var a = new Assembler(64);
        build(a);
        var w = new MemoryWriter();
        a.Assemble(w, rip);
        return w.ToArray();
    }

    public Vcpu NewVcpu(int index = 0, int count = 1, ulong rip = CodeBase)
    {
        var link = new VcpuLink(index);
        Memory.AttachVcpu(link);
        var v = new Vcpu(index, Memory, link, Exits);
        v.Cr0 = 0x80010033;   // PE|MP|ET|NE|WP|PG
        v.Cr4 = 0x620;        // PAE|OSFXSR|OSXMMEXCPT
        v.Efer = 0xD01;       // SCE|LME|LMA|NXE
        v.Cr3 = Pml4;
        v.SetGdtr(Gdt, 0x27);
        v.SetIdtr(0, 0);
        v.SetSegment(SegmentRegister.Cs, 0x08, 0);
        foreach (var sreg in new[] { SegmentRegister.Ds, SegmentRegister.Es, SegmentRegister.Ss })
            v.SetSegment(sreg, 0x10, 0);
        v.SetSegment(SegmentRegister.Fs, 0, 0);
        v.SetSegment(SegmentRegister.Gs, 0, 0);
        v.Rflags = 2;
        v.Rip = rip;
        v.SetGpr(Gpr.Rsp, RamBytes - 0x100000 - (ulong)index * 0x10000);
        v.SetGpr(Gpr.Rdi, (ulong)index);
        v.SetGpr(Gpr.Rsi, (ulong)count);
        v.SetGpr(Gpr.Rdx, RamBytes);
        _vcpus.Add(v);
        return v;
    }

    /// <summary>Assembles <paramref name="build"/> at CodeBase, runs one vCPU to an exit.</summary>
    public (VcpuExit Exit, Vcpu Cpu) Run(Action<Assembler> build, long limit = 10_000_000, Action<Vcpu>? setup = null)
    {
        Write(CodeBase, Assemble(build));
        var v = NewVcpu();
        setup?.Invoke(v);
        return (v.Run(limit), v);
    }

    public void Dispose()
    {
        foreach (var v in _vcpus) v.Dispose();
        Memory.Dispose();
    }
}

internal sealed class MemoryWriter : CodeWriter
{
    private readonly List<byte> _bytes = new();
    public override void WriteByte(byte value) => _bytes.Add(value);
    public byte[] ToArray() => _bytes.ToArray();
}
