using System.Runtime.InteropServices;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Tests.Vm;

/// <summary>
/// Guest memory that allocates a page only when it is first touched, so tests can
/// build the boot structures of many GiB of RAM cheaply. Not thread-safe.
/// </summary>
internal sealed unsafe class SparseGuestMemory : IGuestMemory, IDisposable
{
    private readonly Dictionary<ulong, nint> _pages = new();

    public SparseGuestMemory(ulong ramBytes) => RamBytes = ramBytes;

    public ulong RamBytes { get; }
    public int PagesTouched => _pages.Count;

    public void AttachVcpu(VcpuLink vcpu) { }

    public void DetachVcpu(VcpuLink vcpu) { }

    public TranslateStatus Translate(VcpuLink vcpu, Gpa gpa, AccessKind kind, out byte* hostPage)
    {
        hostPage = null;
        if (gpa.Value >= RamBytes) return TranslateStatus.Unbacked;
        if (!_pages.TryGetValue(gpa.PageNumber, out nint p))
        {
            p = (nint)NativeMemory.AllocZeroed((nuint)Page.Size);
            _pages[gpa.PageNumber] = p;
        }
        hostPage = (byte*)p;
        return TranslateStatus.Ok;
    }

    public ulong ReadUInt64(ulong gpa)
    {
        if (!_pages.TryGetValue(gpa >> Page.Shift, out nint p)) return 0;
        // SAFETY: p is a live 4 KiB page and the offset keeps 8 bytes inside it (tests read aligned words).
        return *(ulong*)((byte*)p + (gpa & Page.OffsetMask));
    }

    public long PageOut(Gpa start, ulong bytes) => (long)(bytes >> Page.Shift);
    public long Discard(Gpa start, ulong bytes) => (long)(bytes >> Page.Shift);

    public void Dispose()
    {
        foreach (var p in _pages.Values) NativeMemory.Free((void*)p);
        _pages.Clear();
    }
}
