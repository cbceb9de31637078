using ToyVmm.Mmu.Host;
using Xunit;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Host;

/// <summary>
/// A mapping far larger than the host's frames costs only what is touched: frames,
/// host page tables and swap bookkeeping grow with the touched pages, not the mapping.
/// </summary>
public class SparseHostTests
{
    private const ulong GiB = 1UL << 30;

    [Fact]
    public void Map_64GiBWithSixteenPagesTouched_CostsSixteenFramesAndTheirTablesOnly()
    {
        using var host = NewHost(frames: 1024, swapPages: (64 * GiB) >> Page.Shift);
        var mm = host.CreateAddressSpace();
        var ram = mm.Map(64 * GiB, HostProtection.ReadWrite);
        int tablesBefore = mm.PageTablePages;
        int freeBefore = host.FreeFrames;

        // Sixteen pages 4 GiB apart: each needs its own leaf, directory and (every 512 GiB) PDPT.
        for (ulong i = 0; i < 16; i++) WritePage(mm, ram.Add(i * 4 * GiB), tag: 1, version: i + 1);

        Assert.Equal(16, freeBefore - host.FreeFrames);
        Assert.Equal(16, mm.ResidentPages);
        Assert.True(mm.PageTablePages - tablesBefore <= 16 * 2 + 1, $"{mm.PageTablePages - tablesBefore} tables for 16 pages");
        Assert.Equal(0, host.Swap.SlotsInUse);
        Assert.Equal(0, host.Swap.BookkeepingChunks);

        var r = mm.PageOut(ram, 64 * GiB);
        Assert.Equal(16, r.Written);
        Assert.Equal(16, host.Swap.SlotsInUse);
        Assert.Equal(1, host.Swap.BookkeepingChunks);   // slots are handed out low first: one chunk of 4096
        Assert.Equal(freeBefore, host.FreeFrames);
        for (ulong i = 0; i < 16; i++) AssertPage(mm, ram.Add(i * 4 * GiB), tag: 1, version: i + 1, "after the page-out");
        Assert.Empty(host.CheckConsistency());
    }

    [Fact]
    public void SwapFile_FewSlotsWritten_IsSparse()
    {
        string dir = Directory.CreateTempSubdirectory("toyvmm-sparse-").FullName;
        try
        {
            string path = Path.Combine(dir, "swap");
            using var host = NewHost(frames: 256, swapPages: (16 * GiB) >> Page.Shift, swapPath: path);
            var mm = host.CreateAddressSpace();
            var ram = mm.Map(16 * GiB, HostProtection.ReadWrite);
            for (ulong i = 0; i < 8; i++) WritePage(mm, ram.Add(i * GiB), tag: 2, version: 1);
            Assert.Equal(8, mm.PageOut(ram, 16 * GiB).Written);
            // The file grows only one length step (a hole) past the highest slot written, not to the swap size.
            long length = new FileInfo(path).Length;
            Assert.True(length >= 8 * (long)Page.Size && length <= SwapSpace.LengthStep, $"swap file of {length} bytes for 8 pages");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
