using ToyVmm.Mmu;

namespace ToyVmm.Vm;

/// <summary>
/// Where the VMM puts its boot structures inside the reserved top 1 MiB of guest
/// RAM (GUEST-ABI.md "Memory map"):
/// <code>
///   ram - 1 MiB + 0x0000   GDT: null, 0x08 64-bit code DPL 0, 0x10 data DPL 0
///               + 0x1000   PML4 (entry 0 only)
///               + 0x2000   PDPT (one entry per GiB of RAM)
///               + 0x3000   page directories, one per GiB, 2 MiB pages
///   ...                    (free)
///   ram - (i+1)*64 KiB     vCPU i's stack; RSP starts at ram - i*64 KiB
/// </code>
/// </summary>
public sealed class BootLayout
{
    public const ulong ReservedBytes = 0x100000;
    public const ulong StackBytes = 64 * 1024;
    public const ulong LargePageBytes = 2UL << 20;
    public const ulong GiB = 1UL << 30;
    /// <summary>One PDPT maps 512 GiB; more RAM than that would need a second one.</summary>
    public const ulong MaxRamBytes = 512 * GiB;
    public const ushort GdtLimit = 3 * 8 - 1;

    public const ushort CodeSelector = 0x08;
    public const ushort DataSelector = 0x10;

    private BootLayout(ulong ramBytes, int vcpuCount)
    {
        RamBytes = ramBytes;
        VcpuCount = vcpuCount;
        ReservedStart = new Gpa(ramBytes - ReservedBytes);
        Gdt = ReservedStart;
        Pml4 = ReservedStart.Add(0x1000);
        Pdpt = ReservedStart.Add(0x2000);
        FirstPageDirectory = ReservedStart.Add(0x3000);
        PageDirectoryCount = (int)((ramBytes + GiB - 1) / GiB);
        TablesEnd = FirstPageDirectory.Add((ulong)PageDirectoryCount * Page.Size);
    }

    public ulong RamBytes { get; }
    public int VcpuCount { get; }
    public Gpa ReservedStart { get; }
    public Gpa Gdt { get; }
    public Gpa Pml4 { get; }
    public Gpa Pdpt { get; }
    public Gpa FirstPageDirectory { get; }
    public int PageDirectoryCount { get; }
    /// <summary>First byte after the page tables.</summary>
    public Gpa TablesEnd { get; }
    /// <summary>Lowest byte of the lowest stack.</summary>
    public Gpa StacksStart => new(RamBytes - (ulong)VcpuCount * StackBytes);

    /// <summary>Initial RSP of vCPU <paramref name="index"/>: the top of its own stack, 16-byte aligned.</summary>
    public ulong StackTop(int index) => RamBytes - (ulong)index * StackBytes;

    /// <summary>How many vCPU stacks fit beside the tables for <paramref name="ramBytes"/> of RAM.</summary>
    public static int MaxVcpus(ulong ramBytes)
    {
        if (ramBytes < ReservedBytes * 2 || ramBytes > MaxRamBytes) return 0;
        var probe = new BootLayout(ramBytes, 0);
        return (int)((ramBytes - probe.TablesEnd.Value) / StackBytes);
    }

    /// <summary>Computes the layout or explains in one line why it cannot exist.</summary>
    /// <exception cref="ArgumentException">RAM size unusable, or the stacks do not fit.</exception>
    public static BootLayout Create(ulong ramBytes, int vcpuCount)
    {
        if ((ramBytes & (Page.Size - 1)) != 0 || ramBytes < ReservedBytes * 2 || ramBytes > MaxRamBytes)
            throw new ArgumentException($"guest RAM of 0x{ramBytes:x} bytes is unusable: need a multiple of 4 KiB between 2 MiB and 512 GiB");
        if (vcpuCount < 1)
            throw new ArgumentException($"vCPU count {vcpuCount} must be at least 1");
        int max = MaxVcpus(ramBytes);
        if (vcpuCount > max)
            throw new ArgumentException(
                $"{vcpuCount} vCPU stacks of 64 KiB do not fit in the reserved top 1 MiB beside the page tables of {ramBytes >> 20} MiB of RAM (at most {max})");
        return new BootLayout(ramBytes, vcpuCount);
    }
}
