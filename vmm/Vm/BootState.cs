using ToyVmm.Cpu;
using ToyVmm.Mmu;

namespace ToyVmm.Vm;

/// <summary>
/// Builds the boot structures of <see cref="BootLayout"/> in guest memory and puts
/// each vCPU in the entry state of GUEST-ABI.md "CPU state at entry".
/// </summary>
public static class BootState
{
    // Control-register bits (Intel SDM vol. 3, 2.5).
    public const ulong Cr0Pe = 1UL << 0, Cr0Mp = 1UL << 1, Cr0Et = 1UL << 4, Cr0Ne = 1UL << 5, Cr0Wp = 1UL << 16, Cr0Pg = 1UL << 31;
    public const ulong Cr4Pae = 1UL << 5, Cr4Osfxsr = 1UL << 9, Cr4Osxmmexcpt = 1UL << 10;
    public const ulong EferSce = 1UL << 0, EferLme = 1UL << 8, EferLma = 1UL << 10, EferNxe = 1UL << 11;

    public const ulong EntryCr0 = Cr0Pe | Cr0Mp | Cr0Et | Cr0Ne | Cr0Wp | Cr0Pg;
    public const ulong EntryCr4 = Cr4Pae | Cr4Osfxsr | Cr4Osxmmexcpt;
    public const ulong EntryEfer = EferSce | EferLme | EferLma | EferNxe;
    public const ulong EntryRflags = 0x2;

    // Descriptors with the accessed bit already set, so loading them writes nothing.
    /// <summary>64-bit code, DPL 0, present, execute/read (L = 1, D = 0).</summary>
    public const ulong CodeDescriptor = 0x00AF9B000000FFFF;
    /// <summary>Data, DPL 0, present, read/write, 4 GiB limit.</summary>
    public const ulong DataDescriptor = 0x00CF93000000FFFF;

    // Page-table entry bits. NX stays clear: the identity map is executable.
    public const ulong PtePresent = 1UL << 0, PteWritable = 1UL << 1, PteLarge = 1UL << 7;

    /// <summary>Writes the GDT and the identity page tables of <paramref name="layout"/> into guest memory.</summary>
    public static void BuildTables(GuestPhysicalWriter memory, BootLayout layout)
    {
        memory.Zero(layout.ReservedStart, layout.TablesEnd.OffsetFrom(layout.ReservedStart));

        memory.WriteUInt64(layout.Gdt, 0);
        memory.WriteUInt64(layout.Gdt.Add(BootLayout.CodeSelector), CodeDescriptor);
        memory.WriteUInt64(layout.Gdt.Add(BootLayout.DataSelector), DataDescriptor);

        memory.WriteUInt64(layout.Pml4, layout.Pdpt.Value | PtePresent | PteWritable);
        for (int g = 0; g < layout.PageDirectoryCount; g++)
        {
            Gpa pd = layout.FirstPageDirectory.Add((ulong)g * Page.Size);
            memory.WriteUInt64(layout.Pdpt.Add((ulong)g * 8), pd.Value | PtePresent | PteWritable);
            // 2 MiB pages over this GiB, up to the end of RAM (the last one may reach past it:
            // those guest-physical bytes are unbacked, as GUEST-ABI.md says).
            var entries = new byte[Page.Size];
            for (int e = 0; e < 512; e++)
            {
                ulong phys = (ulong)g * BootLayout.GiB + (ulong)e * BootLayout.LargePageBytes;
                if (phys >= layout.RamBytes) break;
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(
                    entries.AsSpan(e * 8), phys | PtePresent | PteWritable | PteLarge);
            }
            memory.Write(pd, entries);
        }
    }

    /// <summary>Puts <paramref name="vcpu"/> in the GUEST-ABI.md entry state. Call on the vCPU's thread before Run.</summary>
    public static void ApplyEntryState(Vcpu vcpu, BootLayout layout, ulong entry)
    {
        for (var r = Gpr.Rax; r <= Gpr.R15; r++)
            vcpu.SetGpr(r, 0);
        for (int x = 0; x < 16; x++)
            vcpu.SetXmm(x, UInt128.Zero);

        vcpu.Efer = EntryEfer;
        vcpu.Cr4 = EntryCr4;
        vcpu.Cr3 = layout.Pml4.Value;
        vcpu.Cr0 = EntryCr0;
        vcpu.Cr2 = 0;
        vcpu.SetGdtr(layout.Gdt.Value, BootLayout.GdtLimit);
        vcpu.SetIdtr(0, 0);
        vcpu.SetSegment(SegmentRegister.Cs, BootLayout.CodeSelector, 0);
        vcpu.SetSegment(SegmentRegister.Ds, BootLayout.DataSelector, 0);
        vcpu.SetSegment(SegmentRegister.Es, BootLayout.DataSelector, 0);
        vcpu.SetSegment(SegmentRegister.Ss, BootLayout.DataSelector, 0);
        vcpu.SetSegment(SegmentRegister.Fs, 0, 0);
        vcpu.SetSegment(SegmentRegister.Gs, 0, 0);
        vcpu.Rflags = EntryRflags;
        vcpu.Rip = entry;

        vcpu.SetGpr(Gpr.Rsp, layout.StackTop(vcpu.Index));
        vcpu.SetGpr(Gpr.Rdi, (ulong)vcpu.Index);
        vcpu.SetGpr(Gpr.Rsi, (ulong)layout.VcpuCount);
        vcpu.SetGpr(Gpr.Rdx, layout.RamBytes);
    }
}
