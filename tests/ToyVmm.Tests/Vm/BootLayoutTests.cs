using System.Buffers.Binary;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;
using Xunit;

namespace ToyVmm.Tests.Vm;

public class BootLayoutTests
{
    [Fact]
    public void Create_64MiB_PutsTablesAndStacksInReservedTop()
    {
        var l = BootLayout.Create(64UL << 20, 4);
        Assert.Equal(0x3F00000UL, l.ReservedStart.Value);
        Assert.Equal(0x3F00000UL, l.Gdt.Value);
        Assert.Equal(0x3F01000UL, l.Pml4.Value);
        Assert.Equal(1, l.PageDirectoryCount);
        Assert.Equal(0x3F04000UL, l.TablesEnd.Value);
        Assert.Equal(64UL << 20, l.StackTop(0));
        Assert.Equal((64UL << 20) - 3 * 0x10000, l.StackTop(3));
        Assert.True(l.StacksStart.Value >= l.TablesEnd.Value);
        for (int i = 0; i < 4; i++) Assert.Equal(0UL, l.StackTop(i) % 16);
    }

    [Theory]
    [InlineData(64UL << 20, 15)]
    [InlineData(4UL << 20, 15)]
    [InlineData(4UL << 30, 15)]      // 4 page directories: 7 pages of tables
    [InlineData(64UL << 30, 11)]     // 64 page directories
    public void MaxVcpus_CountsStacksBesideTables(ulong ram, int expected)
    {
        Assert.Equal(expected, BootLayout.MaxVcpus(ram));
        BootLayout.Create(ram, expected);
        var ex = Assert.Throws<ArgumentException>(() => BootLayout.Create(ram, expected + 1));
        Assert.Contains("do not fit", ex.Message);
    }

    [Fact]
    public void Create_ZeroVcpus_Refused()
    {
        Assert.Throws<ArgumentException>(() => BootLayout.Create(64UL << 20, 0));
    }

    [Fact]
    public void BuildTables_WritesGdtAndIdentityMapOfAllRam()
    {
        ulong ram = 6UL << 20 | 0;   // 6 MiB: three 2 MiB pages
        using var memory = new FlatGuestMemory(ram);
        var layout = BootLayout.Create(ram, 2);
        using (var writer = new GuestPhysicalWriter(memory)) BootState.BuildTables(writer, layout);

        ulong Read(Gpa at) => BinaryPrimitives.ReadUInt64LittleEndian(memory.Bytes(at, 8));
        Assert.Equal(0UL, Read(layout.Gdt));
        Assert.Equal(BootState.CodeDescriptor, Read(layout.Gdt.Add(8)));
        Assert.Equal(BootState.DataDescriptor, Read(layout.Gdt.Add(16)));
        // 64-bit code: L set, D clear, DPL 0, present, code type.
        Assert.NotEqual(0UL, BootState.CodeDescriptor & (1UL << 53));
        Assert.Equal(0UL, BootState.CodeDescriptor & (1UL << 54));
        Assert.Equal(0UL, (BootState.CodeDescriptor >> 45) & 3);

        Assert.Equal(layout.Pdpt.Value | 3, Read(layout.Pml4));
        Assert.Equal(0UL, Read(layout.Pml4.Add(8)));
        Assert.Equal(layout.FirstPageDirectory.Value | 3, Read(layout.Pdpt));
        for (int e = 0; e < 3; e++)
            Assert.Equal(((ulong)e << 21) | 0x83, Read(layout.FirstPageDirectory.Add((ulong)e * 8)));
        Assert.Equal(0UL, Read(layout.FirstPageDirectory.Add(3 * 8)));
    }

    [Theory]
    [InlineData(6UL << 20)]
    [InlineData((2UL << 30) | (6UL << 20))]   // just over 2 GiB: three page directories, the last one partial
    [InlineData(64UL << 30)]
    public void BuildTables_WalkOfIdentityMap_GivesEveryRamAddressBack(ulong ram)
    {
        using var memory = new SparseGuestMemory(ram);
        var layout = BootLayout.Create(ram, 1);
        using (var writer = new GuestPhysicalWriter(memory)) BootState.BuildTables(writer, layout);
        Assert.Equal((int)((ram + (1UL << 30) - 1) >> 30), layout.PageDirectoryCount);

        ulong Walk(ulong va)
        {
            ulong pml4e = memory.ReadUInt64(layout.Pml4.Value + ((va >> 39) & 511) * 8);
            Assert.True((pml4e & 1) != 0, $"PML4E for 0x{va:x} present");
            ulong pdpte = memory.ReadUInt64((pml4e & 0x000F_FFFF_FFFF_F000) + ((va >> 30) & 511) * 8);
            Assert.True((pdpte & 1) != 0, $"PDPTE for 0x{va:x} present");
            ulong pde = memory.ReadUInt64((pdpte & 0x000F_FFFF_FFFF_F000) + ((va >> 21) & 511) * 8);
            Assert.True((pde & 0x83) == 0x83, $"PDE for 0x{va:x} present, writable, 2 MiB");
            Assert.True((pde & (1UL << 63)) == 0, "executable");
            return (pde & 0x000F_FFFF_FFE0_0000) | (va & 0x1F_FFFF);
        }
        ulong step = Math.Max(0x1F_F000, ram / 4096 | 0xFFF) + 1;
        for (ulong va = 0; va < ram; va += step)
            Assert.Equal(va, Walk(va));
        Assert.Equal(ram - 8, Walk(ram - 8));
        // Nothing past the last 2 MiB page that holds RAM is mapped.
        ulong pastEnd = (ram + 0x1F_FFFF) & ~0x1F_FFFFUL;
        if ((pastEnd & 0x3FFF_FFFF) != 0)
        {
            ulong pd = layout.FirstPageDirectory.Value + (pastEnd >> 30) * 0x1000;
            Assert.Equal(0UL, memory.ReadUInt64(pd + ((pastEnd >> 21) & 511) * 8));
        }
    }
}
