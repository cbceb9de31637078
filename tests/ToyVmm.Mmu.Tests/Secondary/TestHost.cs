using System.Runtime.InteropServices;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Tests.Secondary;

/// <summary>
/// A small host for testing the secondary MMU's protocol in isolation: a page
/// table, a frame pool with reference counts, and page-out and discard that
/// tell the subscribers through the registry's protocol (the range protocol, or
/// the broken-2008 order, where frames are also freed only after invalidate_page).
/// </summary>
internal sealed unsafe class TestHost : IHostMemory, IHostMadvise, IDisposable
{
    public static readonly Hva RamBase = new(0x7f00_0000_0000);
    private readonly Lock _lock = new();
    private readonly byte* _pool;
    private readonly int[] _refs;
    private readonly bool[] _free;
    private readonly bool[] _dirty;
    private readonly Stack<uint> _freeList = new();
    private readonly Dictionary<ulong, uint> _pte = new();          // hva page -> frame
    private readonly Dictionary<ulong, byte[]> _swap = new();       // hva page -> contents
    private readonly HashSet<uint> _orphans = new();                // unmapped but still referenced

    public TestHost(int frames, bool broken2008 = false)
    {
        Broken2008 = broken2008;
        Notifiers.Protocol = NotifierProtocols.Of(broken2008 ? NotifierProtocol.Broken2008 : NotifierProtocol.Sequence);
        _pool = (byte*)NativeMemory.AllocZeroed((nuint)frames * 4096);
        _refs = new int[frames]; _free = new bool[frames]; _dirty = new bool[frames];
        for (int i = frames - 1; i >= 0; i--) { _free[i] = true; _freeList.Push((uint)i); }
    }

    public MmuNotifierRegistry Notifiers { get; } = new();
    public bool Broken2008 { get; }
    public Action<Hfn>? FrameFreed { get; set; }
    public int FreeFrames { get { lock (_lock) return _freeList.Count; } }

    public HostFaultResult GetUserPage(Hva address, bool write, out Hfn frame)
    {
        lock (_lock)
        {
            ulong vpn = address.PageNumber;
            if (!_pte.TryGetValue(vpn, out uint f))
            {
                if (_freeList.Count == 0) { frame = Hfn.None; return HostFaultResult.OutOfMemory; }
                f = _freeList.Pop();
                _free[f] = false;
                var bytes = new Span<byte>(_pool + (ulong)f * 4096, 4096);
                if (_swap.Remove(vpn, out var saved)) saved.CopyTo(bytes); else bytes.Clear();
                _pte[vpn] = f;
            }
            _refs[f]++;
            if (write) _dirty[f] = true;
            frame = new Hfn(f);
            return HostFaultResult.Ok;
        }
    }

    public void PutUserPage(Hfn frame, PageRelease how)
    {
        lock (_lock)
        {
            if (how == PageRelease.Dirty) _dirty[frame.Value] = true;
            if (--_refs[frame.Value] == 0 && _orphans.Remove(frame.Value)) FreeLocked(frame.Value);
        }
    }

    public byte* FrameAddress(Hfn frame) => _pool + (ulong)frame.Value * 4096;

    public void SetPageDirty(Hfn frame) { lock (_lock) _dirty[frame.Value] = true; }

    public bool FrameBacks(Hfn frame, Hva address)
    {
        lock (_lock) return !_free[frame.Value] && _pte.TryGetValue(address.PageNumber, out uint f) && f == frame.Value;
    }

    public long PageOut(Hva start, ulong bytes) => Evict(start, bytes, keep: true);
    public long DontNeed(Hva start, ulong bytes) => Evict(start, bytes, keep: false);

    /// <summary>Each distinct page evicted on its own (this host has no batches).</summary>
    public long PageOutPages(ReadOnlySpan<Hva> pages)
    {
        var distinct = new SortedSet<ulong>();
        foreach (var p in pages) distinct.Add(p.PageNumber);
        long n = 0;
        foreach (ulong page in distinct) n += Evict(Hva.FromPageNumber(page), Page.Size, keep: true);
        return n;
    }

    /// <summary>Evict [start, start+bytes): start, clear the PTEs, end, as the registry's protocol says.</summary>
    public long Evict(Hva start, ulong bytes, bool keep)
    {
        var range = new InvalidateRange(start, start.Add(bytes), InvalidateEvent.Clear, MayBlock: true);
        Notifiers.InvalidateRangeStart(range);
        long n = 0;
        lock (_lock)
        {
            for (ulong a = start.Value; a < start.Value + bytes; a += 4096)
            {
                if (!_pte.Remove(a >> 12, out uint f)) continue;
                if (keep) _swap[a >> 12] = new Span<byte>(_pool + (ulong)f * 4096, 4096).ToArray();
                if (_refs[f] == 0 && !Broken2008) FreeLocked(f); else _orphans.Add(f);
                n++;
            }
        }
        // Broken-2008: the PTEs are already gone when the secondary MMU hears of them (here).
        Notifiers.InvalidateRangeEnd(range);
        if (Broken2008)
            lock (_lock)
                foreach (var f in _orphans.Where(f => _refs[f] == 0).ToList()) { _orphans.Remove(f); FreeLocked(f); }
        return n;
    }

    private void FreeLocked(uint f)
    {
        FrameFreed?.Invoke(new Hfn(f));
        _free[f] = true; _dirty[f] = false;
        new Span<byte>(_pool + (ulong)f * 4096, 4096).Fill(0xCC);   // poison: a stale mapping reads garbage
        _freeList.Push(f);
    }

    public void Dispose() => NativeMemory.Free(_pool);
}
