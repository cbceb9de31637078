using Xunit;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Tests.Secondary;

/// <summary>
/// The VMM's side of guest memory: one range rule, the range cut at slot
/// boundaries into host-virtual ranges handed straight to the host's madvise,
/// slot changes forwarded to the secondary MMU.
/// </summary>
public class GuestMemoryManagerTests
{
    private static readonly Hva A = new(0x7f00_0000_0000), B = new(0x7f10_0000_0000);
    private const ulong Ram = 32 * Page.Size;

    /// <summary>Records every madvise; answers with the pages asked for.</summary>
    private sealed class Madvise : IHostMadvise
    {
        public readonly List<string> Calls = new();
        public long PageOut(Hva start, ulong bytes) { Calls.Add($"pageout {start} {bytes >> Page.Shift}"); return (long)(bytes >> Page.Shift); }
        public long PageOutPages(ReadOnlySpan<Hva> pages)
        {
            var listed = new List<string>();
            foreach (var p in pages) listed.Add(p.ToString());
            Calls.Add($"pageout-pages {string.Join(",", listed)}");
            return pages.Length;
        }
        public long DontNeed(Hva start, ulong bytes) { Calls.Add($"dontneed {start} {bytes >> Page.Shift}"); return (long)(bytes >> Page.Shift); }
    }

    /// <summary>The slot side of a secondary MMU, for the manager to forward to (nothing here translates).</summary>
    private sealed class SlotsOnly : ISecondaryMmu
    {
        public SlotTable Slots { get; } = new();
        public ulong RamBytes => Ram;
        public void AddSlot(MemorySlot slot) => Slots.Add(slot);
        public bool RemoveSlot(int id) => Slots.Remove(id);
        public void AttachVcpu(VcpuLink vcpu) => throw new InvalidOperationException("the manager never attaches");
        public void DetachVcpu(VcpuLink vcpu) => throw new InvalidOperationException("the manager never detaches");
        public unsafe TranslateStatus Translate(VcpuLink vcpu, Gpa gpa, AccessKind kind, out byte* hostPage) =>
            throw new InvalidOperationException("the manager never translates");
    }

    private static (GuestMemoryManager manager, Madvise host) Make()
    {
        var host = new Madvise();
        var manager = new GuestMemoryManager(host, new SlotsOnly());
        manager.AddSlot(new MemorySlot(0, new Gpa(0), 16 * Page.Size, A));
        manager.AddSlot(new MemorySlot(1, Gpa.FromPageNumber(16), 16 * Page.Size, B));
        return (manager, host);
    }

    [Theory]
    [InlineData(0x1001UL, 0x1000UL)]              // start not page-aligned
    [InlineData(0x1000UL, 0x800UL)]               // length not page-aligned
    [InlineData(Ram, 0x1000UL)]                   // past the end of RAM
    [InlineData(0x1000UL, ulong.MaxValue - 0xFFFUL)] // wraps around
    public void PageOutAndDiscard_BadRange_AreInvalidAndReachNoHost(ulong start, ulong bytes)
    {
        var (manager, host) = Make();
        int notices = 0;
        manager.ContentsReplaced += (_, _) => notices++;
        Assert.Equal(GuestRange.Invalid, manager.PageOut(new Gpa(start), bytes));
        Assert.Equal(GuestRange.Invalid, manager.Discard(new Gpa(start), bytes));
        Assert.Empty(host.Calls);
        Assert.Equal(0, notices);
    }

    [Fact]
    public void PageOutPages_ScatteredOverTwoSlots_OneHostCallListingEachPageAtItsSlot()
    {
        var (manager, host) = Make();
        Assert.Equal(3, manager.PageOutPages([Gpa.FromPageNumber(20), Gpa.FromPageNumber(2), Gpa.FromPageNumber(15)]));
        Assert.Equal([$"pageout-pages {B.Add(4 * Page.Size)},{A.Add(2 * Page.Size)},{A.Add(15 * Page.Size)}"], host.Calls);
    }

    [Theory]
    [InlineData(0x1001UL)]                  // not page-aligned
    [InlineData(Ram)]                       // past the end of RAM
    [InlineData(ulong.MaxValue - 0xFFFUL)]  // wraps around
    public void PageOutPages_OneBadEntry_InvalidAndReachesNoHost(ulong bad)
    {
        var (manager, host) = Make();
        Assert.Equal(GuestRange.Invalid, manager.PageOutPages([Gpa.FromPageNumber(1), new Gpa(bad), Gpa.FromPageNumber(17)]));
        Assert.Empty(host.Calls);
    }

    [Fact]
    public void PageOutPages_EmptyList_ZeroAndReachesNoHost()
    {
        var (manager, host) = Make();
        Assert.Equal(0, manager.PageOutPages([]));
        Assert.Empty(host.Calls);
    }

    [Fact]
    public void PageOut_RangeOverTwoSlots_OneHostCallPerSlotPiece()
    {
        var (manager, host) = Make();
        Assert.Equal(4, manager.PageOut(Gpa.FromPageNumber(14), 4 * Page.Size));
        Assert.Equal([$"pageout {A.Add(14 * Page.Size)} 2", $"pageout {B} 2"], host.Calls);
    }

    [Fact]
    public void Discard_ValidRange_GoesToDontNeedAndRaisesContentsReplacedOnce()
    {
        var (manager, host) = Make();
        var notices = new List<(Gpa, ulong)>();
        manager.ContentsReplaced += (s, n) => notices.Add((s, n));
        Assert.Equal(3, manager.Discard(Gpa.FromPageNumber(17), 3 * Page.Size));
        Assert.Equal([$"dontneed {B.Add(Page.Size)} 3"], host.Calls);
        Assert.Equal([(Gpa.FromPageNumber(17), 3 * Page.Size)], notices);
        manager.PageOut(Gpa.FromPageNumber(17), Page.Size);
        Assert.Single(notices);   // PAGEOUT keeps contents: no notice
    }

    [Fact]
    public void RemoveSlot_ThenPageOutOverIt_ReachesOnlyTheSlotsLeft()
    {
        var (manager, host) = Make();
        Assert.True(manager.RemoveSlot(1));
        Assert.False(manager.RemoveSlot(1));
        Assert.Equal(2, manager.PageOut(Gpa.FromPageNumber(14), 4 * Page.Size));
        Assert.Equal([$"pageout {A.Add(14 * Page.Size)} 2"], host.Calls);
        Assert.Null(manager.Slots.Find(Gpa.FromPageNumber(16)));
    }
}
