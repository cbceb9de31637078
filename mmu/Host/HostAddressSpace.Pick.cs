namespace ToyVmm.Mmu.Host;

// Choosing resident pages for a forced page-out, by the host's view of their
// use. Locks: the LRU lock alone to collect candidates (dropped), then this
// space's lock to re-check each candidate and ask the secondary MMUs through
// TestYoung (a notifier callback: under the address-space lock, LOCKING.md).
// Nothing is taken off a list, no reference is held and no accessed bit is
// cleared: the result is a set of addresses, a hint that the caller acts on
// through PageOut (which re-checks everything under its own locks).

public sealed partial class HostAddressSpace
{
    /// <summary>Candidates looked at per page wanted (reclaim's isolate scans the same multiple).</summary>
    private const int PickWindowPerPage = 4;
    private const int PickWindowMin = 256;

    /// <summary>
    /// Pick up to <paramref name="picked"/>.Length resident pages of
    /// [<paramref name="start"/>, +<paramref name="bytes"/>) by the host's LRU and
    /// the accessed bits aging would see, without clearing any: the host PTE's,
    /// the frame's referenced bit, and every secondary MMU's (<c>TestYoung</c>).
    /// <see cref="ResidentPagePick.Cold"/> takes the pages reclaim would take first
    /// and only then, if too few are left, accessed ones;
    /// <see cref="ResidentPagePick.Hot"/> takes accessed pages first, most recently
    /// listed first. Looks at no more than four candidates per page wanted (at least 256).
    /// Returns the number of page addresses written, in pick order.
    /// </summary>
    public int PickResidentPages(Hva start, ulong bytes, ResidentPagePick pick, Span<Hva> picked)
    {
        var (s, e) = CheckRange(start, bytes);
        if (picked.IsEmpty) return 0;
        int window = (int)Math.Min(int.MaxValue / 2, Math.Max(PickWindowMin, (long)picked.Length * PickWindowPerPage));
        var candidates = new List<(uint Frame, ulong Vpn)>(Math.Min(window, (int)Math.Min(e - s, 1 << 16)));
        _host.Lru.CollectOwned(hottestFirst: pick == ResidentPagePick.Hot, Id, s, e, window, candidates);
        if (candidates.Count == 0) return 0;

        // 0: no longer mapped there; 1: not accessed; 2: accessed.
        var state = new byte[candidates.Count];
        EnterLock();
        try
        {
            if (_disposed) return 0;
            for (int i = 0; i < candidates.Count; i++)
            {
                var (f, vpn) = candidates[i];
                var pte = _pt.Get(vpn);
                if (!pte.IsPresent || pte.Frame != f) continue;
                state[i] = IsYoungLocked(f, vpn, pte) ? (byte)2 : (byte)1;
            }
        }
        finally { ExitLock(); }

        byte first = pick == ResidentPagePick.Hot ? (byte)2 : (byte)1;
        byte second = (byte)(3 - first);
        int n = 0;
        foreach (byte wanted in (ReadOnlySpan<byte>)[first, second])
            for (int i = 0; i < candidates.Count && n < picked.Length; i++)
                if (state[i] == wanted) picked[n++] = Hva.FromPageNumber(candidates[i].Vpn);
        return n;
    }

    /// <summary>
    /// Write the addresses of the first <paramref name="into"/>.Length resident
    /// pages at or after <paramref name="start"/> and below
    /// <paramref name="start"/> + <paramref name="bytes"/>, in address order.
    /// Returns how many were written.
    /// </summary>
    public int ResidentPagesIn(Hva start, ulong bytes, Span<Hva> into)
    {
        var (s, e) = CheckRange(start, bytes);
        int n = 0;
        EnterLock();
        try
        {
            if (_disposed) return 0;
            for (ulong vpn = s; n < into.Length && _pt.NextUsed(ref vpn, e); vpn++)
                if (_pt.Get(vpn).IsPresent) into[n++] = Hva.FromPageNumber(vpn);
        }
        finally { ExitLock(); }
        return n;
    }

    /// <summary>Was the page used since aging last looked? The test of <see cref="TestAndClearYoungLocked"/>, clearing nothing.</summary>
    private bool IsYoungLocked(uint f, ulong vpn, Pte pte)
    {
        AssertLocked();
        if (pte.Accessed || _frames.Has(f, FrameFlags.Referenced)) return true;
        return !Notifiers.IsEmpty && Notifiers.TestYoung(Hva.FromPageNumber(vpn));
    }
}
