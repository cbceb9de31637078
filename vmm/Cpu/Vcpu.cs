using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Cpu;

/// <summary>
/// One virtual CPU: its architectural state and the interpreter loop that runs
/// it. Constructed and run on the vCPU's own thread.
/// </summary>
/// <remarks>
/// API contract used by the VMM, tests and benchmarks (the interpreter fills it in):
/// registers are read and written through the accessors below; <see cref="Run"/>
/// executes until an exit. Everything else is internal to <c>vmm/Cpu/</c>.
/// </remarks>
public sealed partial class Vcpu
{
    public Vcpu(int index, ISecondaryMmu memory, VcpuLink link, IVcpuHost host)
    {
        Index = index;
        Memory = memory;
        Link = link;
        Host = host;
    }

    public int Index { get; }
    public ISecondaryMmu Memory { get; }
    public VcpuLink Link { get; }
    public IVcpuHost Host { get; }

    public ulong GetGpr(Gpr r) => throw new NotImplementedException();
    public void SetGpr(Gpr r, ulong value) => throw new NotImplementedException();
    public ulong Rip { get => throw new NotImplementedException(); set => throw new NotImplementedException(); }
    /// <summary>Architectural RFLAGS (lazy flags materialised on read).</summary>
    public ulong Rflags { get => throw new NotImplementedException(); set => throw new NotImplementedException(); }
    public ulong Cr0 { get => throw new NotImplementedException(); set => throw new NotImplementedException(); }
    public ulong Cr2 { get => throw new NotImplementedException(); set => throw new NotImplementedException(); }
    public ulong Cr3 { get => throw new NotImplementedException(); set => throw new NotImplementedException(); }
    public ulong Cr4 { get => throw new NotImplementedException(); set => throw new NotImplementedException(); }
    public ulong Efer { get => throw new NotImplementedException(); set => throw new NotImplementedException(); }
    public UInt128 GetXmm(int index) => throw new NotImplementedException();
    public void SetXmm(int index, UInt128 value) => throw new NotImplementedException();

    /// <summary>GDTR base and limit (the VMM points it at the GDT it builds in the reserved top).</summary>
    public void SetGdtr(ulong baseAddress, ushort limit) => throw new NotImplementedException();
    /// <summary>IDTR base and limit (limit 0 at entry: any exception is a VM error).</summary>
    public void SetIdtr(ulong baseAddress, ushort limit) => throw new NotImplementedException();
    /// <summary>Loads a segment register with a selector and flat base; CS must be a 64-bit code selector.</summary>
    public void SetSegment(SegmentRegister seg, ushort selector, ulong baseAddress) => throw new NotImplementedException();

    /// <summary>Instructions retired since construction.</summary>
    public long InstructionsRetired => throw new NotImplementedException();

    /// <summary>
    /// Execute guest instructions until an exit or until about
    /// <paramref name="instructionLimit"/> more instructions have retired
    /// (checked at block boundaries). Enters guest mode on entry and leaves it on return.
    /// </summary>
    public VcpuExit Run(long instructionLimit = long.MaxValue) => throw new NotImplementedException();
}

public enum SegmentRegister { Es, Cs, Ss, Ds, Fs, Gs }
