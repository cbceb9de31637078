using ToyVmm.Mmu;
using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Bench.Host;

internal static class HostBenchUtil
{
    public static HostMemory NewHost(int frames, ulong swapPages) => new(new HostMemoryOptions
    {
        HostMemoryBytes = (ulong)frames << Page.Shift,
        SwapBytes = swapPages << Page.Shift,
    });

    /// <summary>Write one word into each page so that it is dirty.</summary>
    public static void Dirty(HostAddressSpace mm, Hva start, int pages)
    {
        for (int i = 0; i < pages; i++) mm.WriteUInt64(start.Add((ulong)i * Page.Size), (ulong)i + 1);
    }
}

/// <summary>Makes every swap write fail (to leave pages in the swap cache, unmapped).</summary>
internal sealed class FailingWrites : ISwapFaultInjector
{
    public bool Fail;
    public Exception? BeforeWrite(uint firstSlot, int slots) => Fail ? new IOException("injected") : null;
    public Exception? BeforeRead(uint slot) => null;
}

/// <summary>A secondary MMU that reports every page as recently used (so aging only rotates).</summary>
internal sealed class AlwaysYoung : IMmuNotifierSubscriber
{
    public bool InvalidateRangeStart(in InvalidateRange range) => true;
    public void InvalidateRangeEnd(in InvalidateRange range) { }
    public bool ClearFlushYoung(Hva start, Hva end) => true;
    public bool ClearYoung(Hva start, Hva end) => true;
    public bool TestYoung(Hva address) => true;
}
