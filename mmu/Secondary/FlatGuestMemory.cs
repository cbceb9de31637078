using System.Runtime.InteropServices;

namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// Guest RAM as one native block with no host underneath: the simple memory
/// the interpreter runs on until the EPT-like secondary MMU backs it. Every
/// guest-physical page is always present; PAGEOUT has nothing to write and
/// keeps contents; DISCARD zeroes.
/// </summary>
public sealed unsafe class FlatGuestMemory : ISecondaryMmu, IDisposable
{
    private byte* _base;                         // owned; freed in Dispose
    private readonly List<VcpuLink> _vcpus = new(); // guarded by itself

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

    public void AttachVcpu(VcpuLink vcpu)
    {
        lock (_vcpus) _vcpus.Add(vcpu);
    }

    public void DetachVcpu(VcpuLink vcpu)
    {
        lock (_vcpus) _vcpus.Remove(vcpu);
    }

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
        if (!ValidRange(start, bytes)) return -22;
        return (long)(bytes >> Page.Shift);
    }

    public long Discard(Gpa start, ulong bytes)
    {
        if (!ValidRange(start, bytes)) return -22;
        // SAFETY: ValidRange checked the range is inside the block.
        NativeMemory.Clear(_base + start.Value, (nuint)bytes);
        ContentsReplaced?.Invoke(start, bytes);
        return (long)(bytes >> Page.Shift);
    }

    private bool ValidRange(Gpa start, ulong bytes) =>
        (start.Value & Page.OffsetMask) == 0 && (bytes & Page.OffsetMask) == 0 &&
        start.Value <= RamBytes && bytes <= RamBytes - start.Value;

    public void Dispose()
    {
        if (_base != null)
        {
            NativeMemory.AlignedFree(_base);
            _base = null;
        }
    }
}
