using System.Text;
using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Mmu.Secondary;

// Lock order: _lock is a leaf; it is taken inside the MMU lock (install, zap)
// and inside host locks (frame free), and nothing is called while it is held
// except, once, at the first violation: the vCPU list (WatchVcpus, which must only
// read) and the Violated handlers.

/// <summary>A broken invariant: "the spte must never be established when the pte isn't".</summary>
/// <param name="Vcpu">The vCPU the rule names (whose TLB or flush is at fault), or null.</param>
/// <param name="Events">The last events on the frame and the page, oldest first (what <paramref name="History"/> prints).</param>
public sealed record MmuViolation(string Rule, Hfn Frame, Gpa Gpa, string History)
{
    public int? Vcpu { get; init; }
    public IReadOnlyList<MmuCheckEvent> Events { get; init; } = [];

    public override string ToString() => $"MMU invariant violated: {Rule} ({Frame}, {Gpa})\n{History}";
}

/// <summary>
/// One event the checker saw: <paramref name="Page"/> is null for a frame free; <paramref name="Vcpu"/>
/// is the vCPU that did it when the event came from a vCPU thread, else null (the
/// reclaimer, the page-out driver: see <paramref name="Thread"/>).
/// </summary>
public sealed record MmuCheckEvent(long Seq, string Kind, Hfn Frame, Gpa? Page, int Thread, int? Vcpu);

/// <summary>
/// The invariant checker (docs/DESIGN.md "The invariant checker"): at every secondary install, every TLB
/// fill and every host frame free, no secondary entry and no vCPU TLB entry
/// refers to a free frame or to a frame that now backs a different page. It
/// keeps the last events so that a violation names what happened to both the
/// frame and the guest page.
/// </summary>
public sealed class MmuInvariantChecker : IMmuInvariantChecker
{
    private enum Kind : byte { Install, Zap, TlbFill, FrameFree, Violation }
    private readonly record struct Event(long Seq, Kind Kind, uint Frame, ulong Gfn, int Thread, int Vcpu);
    private readonly record struct Waiter(VcpuLink Vcpu, long PostedAtZap, long Entries);
    private sealed record Unflushed(ulong Gfn, nint HostPage, Waiter[] Vcpus);

    private const int HistorySize = 4096;
    private readonly Lock _lock = new();
    // guarded by _lock: frame -> gfns of the secondary entries that map it. Usually one; more
    // when a grant's frame is mapped by several attachments (or by its owner's own attachment).
    private readonly Dictionary<uint, List<ulong>> _installed = new();
    private readonly Dictionary<uint, Unflushed> _unflushed = new(); // guarded by _lock: zapped frame -> vCPUs in guest mode at the zap
    private readonly Event[] _history = new Event[HistorySize];      // guarded by _lock
    private long _events;                                            // guarded by _lock
    private MmuViolation? _first;
    private int _violations;
    private Func<VcpuLink[]>? _vcpus;

    /// <summary>The first violation seen, or null.</summary>
    public MmuViolation? FirstViolation => Volatile.Read(ref _first);
    public int ViolationCount => Volatile.Read(ref _violations);
    public long Checks => Volatile.Read(ref _events);

    /// <summary>Raised once, at the first violation (the VM stops on it).</summary>
    public event Action<MmuViolation>? Violated;

    /// <summary>Optional recorder: each violation is an instant on the timeline.</summary>
    public IMmuEventSink? Events { get; set; }

    /// <summary>Lets the checker see the vCPUs' flush acknowledgements.</summary>
    public void WatchVcpus(Func<VcpuLink[]> vcpus) => _vcpus = vcpus;

    public void OnInstall(IHostMemory host, Gpa gpa, Hva hva, Hfn frame)
    {
        bool backs = host.FrameBacks(frame, hva);
        lock (_lock)
        {
            Record(Kind.Install, frame, gpa.PageNumber);
            if (!backs)
                ViolateLocked("a secondary entry was installed for a page whose host PTE no longer maps that frame", frame, gpa.PageNumber);
            if (!_installed.TryGetValue(frame.Value, out var gfns)) _installed[frame.Value] = gfns = [];
            if (!gfns.Contains(gpa.PageNumber)) gfns.Add(gpa.PageNumber);
            _unflushed.Remove(frame.Value);
        }
    }

    public unsafe void OnZap(IHostMemory host, ZappedEntry zapped)
    {
        var (gpa, frame) = (zapped.Page, zapped.Frame);
        var vcpus = _vcpus?.Invoke() ?? [];
        lock (_lock)
        {
            Record(Kind.Zap, frame, gpa.PageNumber);
            if (_installed.TryGetValue(frame.Value, out var gfns) && gfns.Remove(gpa.PageNumber) && gfns.Count == 0)
                _installed.Remove(frame.Value);
            // Only the entry's TLB holders (and untracked vCPUs) can have cached the frame.
            var live = vcpus
                .Where(v => v.Mode == VcpuMode.InGuest && zapped.MayBeHeldBy(v.Index))
                .Select(v => new Waiter(v, v.PostedGeneration, v.GuestEntries)).ToArray();
            if (live.Length > 0) _unflushed[frame.Value] = new Unflushed(gpa.PageNumber, (nint)host.FrameAddress(frame), live);
        }
    }

    public void OnTlbFill(IHostMemory host, int vcpu, Gpa gpa, Hva hva, Hfn frame)
    {
        // Called lock-free on the vCPU's fast path; only the cheap check runs here.
        if (host.FrameBacks(frame, hva)) return;
        // This runs inside Translate, before the vCPU notes the page as held and re-reads
        // its requests (TlbShootdown.cs). An invalidation that zapped the entry after the
        // vCPU set its holder bit posted it a flush, and may have found the page not yet
        // noted and freed the frame: the vCPU takes that request and translates again
        // before it uses the pointer. Only a fill with no request pending gets used.
        Interlocked.MemoryBarrier();   // the frame's state above before the requests (the invalidator posts before it frees)
        if (LinkOf(vcpu)?.HasRequests == true) return;
        lock (_lock)
        {
            Record(Kind.TlbFill, frame, gpa.PageNumber, vcpu);
            ViolateLocked($"vCPU {vcpu} filled its TLB from a secondary entry whose frame no longer backs the page", frame, gpa.PageNumber, vcpu);
        }
    }

    private VcpuLink? LinkOf(int index)
    {
        foreach (var v in _vcpus?.Invoke() ?? [])
            if (v.Index == index) return v;
        return null;
    }

    /// <summary>The host is about to free <paramref name="frame"/> (after its invalidation has run).</summary>
    public void OnFrameFree(Hfn frame)
    {
        lock (_lock)
        {
            Record(Kind.FrameFree, frame, ulong.MaxValue);
            if (_installed.TryGetValue(frame.Value, out var gfns) && gfns.Count > 0)
                ViolateLocked("a host frame was freed while a secondary entry still maps it", frame, gfns[0]);
            if (_unflushed.Remove(frame.Value, out var waiting))
                foreach (var (v, posted, entries) in waiting.Vcpus)
                {
                    // A vCPU that left guest mode since the zap takes its requests before it
                    // touches memory again; one still in the same stay must be done with the frame.
                    if (v.Mode != VcpuMode.InGuest || v.GuestEntries != entries) continue;
                    // A TLB the checker can see must not map the frame any more, whatever the protocol claims.
                    var tlb = v.PinTlb();
                    bool maps;
                    try { maps = tlb is not null && tlb.Maps(waiting.Gfn, waiting.HostPage); }
                    finally { if (tlb is not null) v.UnpinTlb(); }
                    if (maps)
                        ViolateLocked($"a host frame was freed while vCPU {v.Index}'s TLB still maps it", frame, waiting.Gfn, v.Index);
                    // And the flush posted after the zap must be complete (acknowledged or done from outside).
                    else if (v.FlushedGeneration <= posted && v.RemoteGeneration <= posted)
                        ViolateLocked($"a host frame was freed before vCPU {v.Index} flushed its TLB", frame, waiting.Gfn, v.Index);
                }
        }
    }

    private void Record(Kind kind, Hfn frame, ulong gfn, int vcpu = -1) =>
        _history[_events++ % HistorySize] = new Event(_events, kind, frame.Value, gfn, Environment.CurrentManagedThreadId, vcpu);

    private void ViolateLocked(string rule, Hfn frame, ulong gfn, int vcpu = -1)
    {
        Record(Kind.Violation, frame, gfn);   // by whoever is running: the rule names the vCPU at fault
        Interlocked.Increment(ref _violations);
        Events?.Violation(gfn, frame.Value, vcpu);
        if (_first is not null) return;
        var gpa = gfn == ulong.MaxValue ? new Gpa(0) : Gpa.FromPageNumber(gfn);
        var events = EventsLocked(frame.Value, gfn);
        var v = new MmuViolation(rule, frame, gpa, HistoryText(frame.Value, gfn, events))
        {
            Vcpu = vcpu >= 0 ? vcpu : null,
            Events = events,
        };
        Volatile.Write(ref _first, v);
        Violated?.Invoke(v);
    }

    /// <summary>The last 12 events on the frame or the page, oldest first, each naming its vCPU where one did it.</summary>
    private List<MmuCheckEvent> EventsLocked(uint frame, ulong gfn)
    {
        // Events from a vCPU thread are named by the vCPU: its link remembers the thread
        // that entered guest mode. Once, at the first violation, so the cost is nil.
        var vcpuOfThread = new Dictionary<int, int>();
        foreach (var link in _vcpus?.Invoke() ?? [])
            if (link.ThreadId != 0) vcpuOfThread.TryAdd(link.ThreadId, link.Index);
        long from = Math.Max(0, _events - HistorySize);
        var events = new List<MmuCheckEvent>();
        for (long i = _events - 1; i >= from && events.Count < 12; i--)
        {
            var e = _history[i % HistorySize];
            if (e.Frame != frame && (gfn == ulong.MaxValue || e.Gfn != gfn)) continue;
            int? vcpu = e.Vcpu >= 0 ? e.Vcpu : vcpuOfThread.TryGetValue(e.Thread, out int v) ? v : null;
            events.Add(new MmuCheckEvent(i, e.Kind.ToString(), new Hfn(e.Frame),
                e.Gfn == ulong.MaxValue ? null : Gpa.FromPageNumber(e.Gfn), e.Thread, vcpu));
        }
        events.Reverse();
        return events;
    }

    private static string HistoryText(uint frame, ulong gfn, List<MmuCheckEvent> events)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"  last events on hfn:0x{frame:x} and {(gfn == ulong.MaxValue ? "its page" : Gpa.FromPageNumber(gfn).ToString())}:");
        foreach (var e in events)
            sb.AppendLine($"    #{e.Seq} {e.Kind,-9} {e.Frame} {e.Page?.ToString() ?? ""} {(e.Vcpu is { } v ? $"vCPU {v}" : $"thread {e.Thread}")}");
        return sb.ToString().TrimEnd();
    }
}
