using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Notifiers;
using Xunit;

namespace ToyVmm.Mmu.Tests.Host;

internal static class HostTestUtil
{
    public static HostMemory NewHost(int frames, ulong swapPages = 1 << 16, string? swapPath = null, int min = 0, int low = 0, int high = 0) =>
        new(new HostMemoryOptions
        {
            HostMemoryBytes = (ulong)frames << Page.Shift,
            SwapBytes = swapPages << Page.Shift,
            SwapFilePath = swapPath,
            MinFreeFrames = min,
            LowFreeFrames = low,
            HighFreeFrames = high,
        });

    /// <summary>A page-sized pattern determined by (tag, page, version); version 0 means "zero".</summary>
    public static void Fill(Span<byte> page, int tag, ulong vpn, ulong version)
    {
        if (version == 0) { page.Clear(); return; }
        ulong x = (ulong)tag * 0x9E3779B97F4A7C15UL ^ vpn * 0xC2B2AE3D27D4EB4FUL ^ version * 0x165667B19E3779F9UL;
        var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(page);
        for (int i = 0; i < words.Length; i++)
        {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            words[i] = x;
        }
    }

    public static void WritePage(HostAddressSpace mm, Hva page, int tag, ulong version)
    {
        var buf = new byte[Page.Size];
        Fill(buf, tag, page.PageNumber, version);
        mm.Write(page, buf);
    }

    public static void AssertPage(HostAddressSpace mm, Hva page, int tag, ulong version, string context)
    {
        var got = new byte[Page.Size];
        var want = new byte[Page.Size];
        mm.Read(page, got);
        Fill(want, tag, page.PageNumber, version);
        if (!got.AsSpan().SequenceEqual(want))
            Assert.Fail($"{context}: {page} does not hold version {version} of space tag {tag} (first word 0x{BitConverter.ToUInt64(got):x}, want 0x{BitConverter.ToUInt64(want):x})");
    }

    public static void AssertConsistent(HostMemory host, string context)
    {
        var errors = host.CheckConsistency();
        Assert.True(errors.Count == 0, $"{context}: {errors.Count} inconsistencies:\n" + string.Join("\n", errors.Take(20)));
    }
}

/// <summary>A notifier subscriber that records every call and checks frames are still allocated at end.</summary>
internal sealed class RecordingSubscriber : IMmuNotifierSubscriber
{
    public readonly List<InvalidateRange> Starts = new();
    public readonly List<InvalidateRange> Ends = new();
    public int Releases;
    public int ClearFlushYoungCalls, ClearYoungCalls;
    public bool ReportYoung;
    /// <summary>Refuse this many non-blocking starts.</summary>
    public int RefuseNonBlocking;
    public Action<InvalidateRange>? OnStart { get; set; }

    public bool InvalidateRangeStart(in InvalidateRange range)
    {
        lock (this)
        {
            if (!range.MayBlock && RefuseNonBlocking > 0) { RefuseNonBlocking--; return false; }
            Starts.Add(range);
        }
        OnStart?.Invoke(range);
        return true;
    }

    public void InvalidateRangeEnd(in InvalidateRange range) { lock (this) Ends.Add(range); }
    public readonly List<Hva> Pages = new();
    public void InvalidatePage(Hva address) { lock (this) Pages.Add(address); }
    public bool ClearFlushYoung(Hva start, Hva end) { lock (this) ClearFlushYoungCalls++; return ReportYoung; }
    public bool ClearYoung(Hva start, Hva end) { lock (this) ClearYoungCalls++; return ReportYoung; }
    public bool TestYoung(Hva address) => ReportYoung;
    public void Release() { lock (this) Releases++; }
}
