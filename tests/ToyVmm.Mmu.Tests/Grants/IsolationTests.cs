using ToyVmm.Mmu.Secondary;
using Xunit;
using Xunit.Abstractions;

namespace ToyVmm.Mmu.Tests.Grants;

/// <summary>
/// Two VMs of one host that share nothing never see each other's bytes: not while
/// both run, not after their pages went to swap and came back, not after DISCARD,
/// and not after one of them is torn down and the other is handed its frames.
/// </summary>
public sealed unsafe class IsolationTests(ITestOutputHelper output)
{
    private const ulong Start = 1UL << 20, Pages = 384, Words = 512;

    /// <summary>The word at (page, word) of VM <paramref name="vm"/>: its number in the top byte, never 0.</summary>
    private static ulong Tag(int vm, ulong page, ulong word) => ((ulong)(vm + 1) << 56) | (page << 12) | (word << 3) | 1;

    private static void Fill(TestVm vm, int index)
    {
        for (ulong p = 0; p < Pages; p++)
        {
            var page = (ulong*)vm.Page(Start + p * 4096);
            for (ulong w = 0; w < Words; w++) page[w] = Tag(index, p, w);
        }
    }

    /// <summary>Every word is the VM's own tag, or zero where <paramref name="zeroed"/> says the page was discarded.</summary>
    private static void AssertOnlyOwn(TestVm vm, int index, Func<ulong, bool> zeroed, string when)
    {
        for (ulong p = 0; p < Pages; p++)
        {
            var page = (ulong*)vm.Page(Start + p * 4096, AccessKind.Read);
            for (ulong w = 0; w < Words; w++)
            {
                ulong want = zeroed(p) ? 0 : Tag(index, p, w);
                if (page[w] != want)
                    Assert.Fail($"vm{index} {when}: page {p} word {w} holds 0x{page[w]:x}, not 0x{want:x} (top byte names the VM it came from)");
            }
        }
    }

    [Theory]
    [InlineData(GrantHostKind.Real)]
    [InlineData(GrantHostKind.Small)]
    public void TwoVmsSharingNothing_BeforeAndAfterPageOutsDiscardsAndTeardown_NeverSeeEachOthersBytes(GrantHostKind kind)
    {
        // The real host has frames for less than half of what the two touch: reclaim and swap reuse frames between them.
        using var f = new GrantFixture(kind, frames: kind == GrantHostKind.Real ? 320 : 2048);
        var (a, b) = (f.Vms[0], f.Vms[1]);
        Fill(a, 0);
        Fill(b, 1);
        AssertOnlyOwn(a, 0, _ => false, "after both wrote");
        AssertOnlyOwn(b, 1, _ => false, "after both wrote");

        a.PageOut(Start, Pages * 4096);
        b.PageOut(Start, Pages * 4096);
        AssertOnlyOwn(b, 1, _ => false, "after page-outs");
        AssertOnlyOwn(a, 0, _ => false, "after page-outs");

        // DISCARD every third page of each: those read as zero, never as the other's.
        Func<ulong, bool> third = p => p % 3 == 0;
        for (ulong p = 0; p < Pages; p += 3)
        {
            a.Evict(Start + p * 4096, 4096);
            b.Evict(Start + p * 4096, 4096);
        }
        AssertOnlyOwn(a, 0, third, "after discards");
        AssertOnlyOwn(b, 1, third, "after discards");

        // A goes; B is handed A's frames for fresh pages and must see zeroes, never A's bytes.
        f.Table.VmEnded(a.Grants);
        if (kind == GrantHostKind.Small) a.Evict(0, GrantFixture.Ram);   // the small host has no address spaces to tear down
        a.Space?.Dispose();
        a.Mmu.Dispose();
        const ulong Fresh = 5UL << 20;
        for (ulong p = 0; p < Pages; p++)
        {
            var page = (ulong*)b.Page(Fresh + p * 4096, AccessKind.Read);
            for (ulong w = 0; w < Words; w++)
                if (page[w] != 0) Assert.Fail($"vm1 fresh page {p} word {w} holds 0x{page[w]:x} after vm0's teardown");
        }
        AssertOnlyOwn(b, 1, third, "after the other's teardown");
        output.WriteLine(f.Checker.FirstViolation?.ToString() ?? $"no violation in {f.Checker.Checks} checks");
        Assert.Equal(0, f.Checker.ViolationCount);
    }
}
