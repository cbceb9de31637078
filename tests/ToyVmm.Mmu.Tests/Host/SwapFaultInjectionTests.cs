using ToyVmm.Mmu.Host;
using Xunit;
using static ToyVmm.Mmu.Tests.Host.HostTestUtil;

namespace ToyVmm.Mmu.Tests.Host;

/// <summary>
/// The swap file changed behind the host's back, as a failing disk or another process
/// would change it: a short read, a slot that holds another slot's data, two slots
/// swapped. Each is detected and reported as an error naming the slot; the page is
/// never read in as guest data, stays swapped (nothing is lost that was intact), and
/// the pages around it keep their contents (SwapTests has the injected I/O errors).
/// </summary>
public class SwapFaultInjectionTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("toyvmm-swapfault-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Four pages of distinct contents, paged out to a named swap file; returns their slots.</summary>
    private (HostMemory Host, HostAddressSpace Mm, Hva Base, uint[] Slots, string Path) FourPagesOut()
    {
        string path = Path.Combine(_dir, "s.swap");
        var host = NewHost(frames: 64, swapPath: path);
        var mm = host.CreateAddressSpace();
        var a = mm.Map(4 * Page.Size, HostProtection.ReadWrite);
        for (ulong i = 0; i < 4; i++) WritePage(mm, a.Add(i * Page.Size), 12, i + 1);
        Assert.Equal(4, mm.PageOut(a, 4 * Page.Size).Written);
        var slots = Enumerable.Range(0, 4).Select(i => mm.QueryPte(a.Add((ulong)i * Page.Size)).SwapSlot).ToArray();
        return (host, mm, a, slots, path);
    }

    [Fact]
    public void SwapIn_ShortRead_ErrorNamesTheShortReadPageStaysSwapped()
    {
        var (host, mm, a, slots, path) = FourPagesOut();
        using (host)
        {
            // The file now ends 100 bytes into the last page's slot: its read comes back short.
            int last = Array.IndexOf(slots, slots.Max());
            SwapFileTamper.Truncate(path, ((long)slots[last] << Page.Shift) + 100);
            var page = a.Add((ulong)last * Page.Size);
            var e = Assert.Throws<HostMemoryException>(() => mm.ReadUInt64(page));
            Assert.Equal(HostFaultStatus.SwapReadError, e.Status);
            Assert.Contains($"swap read failed: the swap file ends early: 100 of {Page.Size} bytes", e.Message);
            Assert.Contains($"slot {slots[last]}", e.Message);
            Assert.True(mm.QueryPte(page).IsSwap, "the page stays swapped, not mapped to a half-read frame");
            for (int i = 0; i < 4; i++)
                if (i != last) AssertPage(mm, a.Add((ulong)i * Page.Size), 12, (ulong)i + 1, "a page whose slot is intact");
            AssertConsistent(host, "after a short read");
        }
    }

    [Fact]
    public void SwapIn_SlotOverwrittenWithAnotherSlotsData_ChecksumMismatchNeverTheOtherPage()
    {
        var (host, mm, a, slots, path) = FourPagesOut();
        using (host)
        {
            // Slot of page 2 now holds page 0's bytes, which are a valid page: only the slot-bound checksum tells.
            SwapFileTamper.Copy(path, (long)slots[0] << Page.Shift, (long)slots[2] << Page.Shift, (int)Page.Size);
            var e = Assert.Throws<HostMemoryException>(() => mm.ReadUInt64(a.Add(2 * Page.Size)));
            Assert.Equal(HostFaultStatus.SwapChecksumMismatch, e.Status);
            Assert.Contains($"swap checksum mismatch on slot {slots[2]}", e.Message);
            Assert.True(mm.QueryPte(a.Add(2 * Page.Size)).IsSwap);
            AssertPage(mm, a, 12, 1, "the page whose bytes were copied");
            AssertPage(mm, a.Add(3 * Page.Size), 12, 4, "an untouched page");
            AssertConsistent(host, "after a slot overwritten with another's data");
        }
    }

    [Fact]
    public void SwapIn_TwoSlotsSwapped_BothDetected()
    {
        var (host, mm, a, slots, path) = FourPagesOut();
        using (host)
        {
            SwapFileTamper.Exchange(path, (long)slots[1] << Page.Shift, (long)slots[3] << Page.Shift, (int)Page.Size);
            foreach (int i in new[] { 1, 3 })
            {
                var e = Assert.Throws<HostMemoryException>(() => mm.ReadUInt64(a.Add((ulong)i * Page.Size)));
                Assert.Equal(HostFaultStatus.SwapChecksumMismatch, e.Status);
            }
            Assert.True(host.Stats.SwapChecksumErrors >= 2);
            AssertPage(mm, a, 12, 1, "an untouched page");
            AssertConsistent(host, "after two slots swapped");
        }
    }
}
