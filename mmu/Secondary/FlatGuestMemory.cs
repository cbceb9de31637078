using System.Runtime.InteropServices;

namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// Guest RAM as one native block with no host underneath and no secondary MMU
/// (<c>--flat-memory</c>, and the interpreter's tests and benchmarks): access
/// is an offset, and the management it supports is the two hypercalls. Every
/// guest-physical page is always present, so nothing is ever invalidated and no
/// vCPU is ever asked to flush; PAGEOUT has nothing to write and keeps contents;
/// DISCARD zeroes.
/// </summary>
public sealed unsafe class FlatGuestMemory : IGuestMemory, IGuestMemoryManagement, IDisposable
{
    private byte* _base;                         // owned; freed in Dispose

    public FlatGuestMemory(ulong ramBytes)
    {
        if (ramBytes == 0 || (ramBytes & Page.OffsetMask) != 0)
            throw new ArgumentOutOfRangeException(nameof(ramBytes), ramBytes, "guest RAM must be a positive multiple of 4 KiB");
        RamBytes = ramBytes;
        _base = (byte*)NativeMemory.AlignedAlloc((nuint)ramBytes, 4096);
        NativeMemory.Clear(_base, (nuint)ramBytes);
    }

    public ulong RamBytes { get; }

    public event Action<Gpa, ulong>? ContentsReplaced;

    /// <summary>Direct access for loaders and tests (not for vCPUs, which go through <see cref="Translate"/>).</summary>
    public Span<byte> Bytes(Gpa start, int length)
    {
        if (start.Value > RamBytes || (ulong)length > RamBytes - start.Value)
            throw new ArgumentOutOfRangeException(nameof(start), $"{start}+{length} is outside guest RAM");
        // SAFETY: the range was checked against RamBytes and _base lives until Dispose.
        return new Span<byte>(_base + start.Value, length);
    }

    /// <summary>Nothing to do: flat memory never invalidates, so it never asks an accessor to flush.</summary>
    public void AttachVcpu(VcpuLink vcpu) { }

    public void DetachVcpu(VcpuLink vcpu) { }

    public TranslateStatus Translate(VcpuLink vcpu, Gpa gpa, AccessKind kind, out byte* hostPage)
    {
        if (gpa.Value >= RamBytes)
        {
            hostPage = null;
            return TranslateStatus.Unbacked;
        }
        // SAFETY: gpa < RamBytes and the block is never moved or freed while the VM runs.
        hostPage = _base + (gpa.Value & ~Page.OffsetMask);
        return TranslateStatus.Ok;
    }

    public long PageOut(Gpa start, ulong bytes)
    {
        if (!GuestRange.Check(start, bytes, RamBytes)) return GuestRange.Invalid;
        return (long)(bytes >> Page.Shift);
    }

    /// <summary>Flat memory has no host to page out to: the list is checked and every page counts as done, as a range's does.</summary>
    public long PageOutPages(ReadOnlySpan<Gpa> pages)
    {
        if (!GuestRange.CheckPages(pages, RamBytes)) return GuestRange.Invalid;
        var distinct = new HashSet<ulong>();
        foreach (var page in pages) distinct.Add(page.PageNumber);
        return distinct.Count;
    }

    public long Discard(Gpa start, ulong bytes)
    {
        if (!GuestRange.Check(start, bytes, RamBytes)) return GuestRange.Invalid;
        // SAFETY: GuestRange.Check put the range inside the block.
        NativeMemory.Clear(_base + start.Value, (nuint)bytes);
        ContentsReplaced?.Invoke(start, bytes);
        return (long)(bytes >> Page.Shift);
    }

    public void Dispose()
    {
        if (_base != null)
        {
            NativeMemory.AlignedFree(_base);
            _base = null;
        }
    }
}
