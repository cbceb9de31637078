using System.Globalization;
using System.Text;

namespace ToyVmm.Report;

/// <summary>
/// The end-of-run table on standard error (<c>--stats</c>): what ran and how fast,
/// the settings, latency percentiles per fault kind and invalidation event in
/// readable units, TLB shootdowns, swap, the host's counters in plain words, the
/// checker, and one line per phase when the guest declared more than one.
/// </summary>
/// <remarks>
/// Fault kinds are always listed (a kind that never happened says <c>none</c>, which is
/// itself a finding: no swap-ins means the pressure never bit); invalidation events,
/// swap lines and shootdown steps that never happened are left out.
/// </remarks>
public static class EndOfRunTable
{
    private static readonly string[] LatencyHeader = ["", "count", "p50", "p90", "p99", "p99.9", "max"];

    public static string Render(RunReport r)
    {
        ArgumentNullException.ThrowIfNull(r);
        var sb = new StringBuilder();
        sb.Append($"{r.Guest}: {Plural(r.Vcpus, "vCPU")}, {Units.Count(r.Instructions)} instructions in {Units.Seconds(r.WallSeconds)}"
            + $" ({Mips(r.Mips)} MIPS), exit status {r.ExitStatus}{(r.Outcome is null ? "" : $" ({r.Outcome})")}\n");
        sb.Append(SettingsLine(r.Settings)).Append('\n');
        sb.Append('\n');

        var t = new TextTable();
        t.Row(["secondary faults", .. LatencyHeader[1..]]);
        LatencyRow(t, "  host page present", r.Faults.Present);
        LatencyRow(t, "  zero-fill", r.Faults.ZeroFill);
        LatencyRow(t, "  swap-cache hit", r.Faults.SwapCacheHit);
        LatencyRow(t, "  swap-in", r.Faults.SwapIn);
        t.Row("  retried (an invalidation overlapped)", Units.Count(r.Faults.Retries));

        var inv = r.Invalidations;
        t.Row(["invalidations", .. LatencyHeader[1..], "pages"]);
        if (inv.Count == 0) t.Row("  all", "none");
        else
        {
            InvalidationRow(t, "  all", inv.Count, inv.Pages, inv.P50Ns, inv.P90Ns, inv.P99Ns, inv.P999Ns, inv.MaxNs);
            foreach (var (name, f) in Events(inv.ByEvent).Where(e => e.Figures.Count > 0))
                InvalidationRow(t, $"    {name}", f.Count, f.Pages, f.P50Ns, f.P90Ns, f.P99Ns, f.P999Ns, f.MaxNs);
        }

        if (r.Swap.PageOutBatches.Count > 0 || r.Swap.Reads.Count > 0)
        {
            t.Row(["swap", .. LatencyHeader[1..]]);
            if (r.Swap.PageOutBatches.Count > 0) LatencyRow(t, $"  page-out batches ({Units.Count(r.Swap.PagesPagedOut)} pages)", r.Swap.PageOutBatches);
            if (r.Swap.Reads.Count > 0) LatencyRow(t, "  reads from the swap file", r.Swap.Reads);
        }
        t.AppendTo(sb);

        var s = r.Shootdown;
        if (s.Count > 0)
        {
            var steps = new List<string>();
            if (s.NeverHeld > 0) steps.Add($"never held the range {Units.Count(s.NeverHeld)}");
            if (s.Acknowledged > 0) steps.Add($"acknowledged {Units.Count(s.Acknowledged)}");
            if (s.ShotDown > 0) steps.Add($"shot down from outside {Units.Count(s.ShotDown)}");
            if (s.Waited > 0) steps.Add($"waited for {Units.Count(s.Waited)}");
            sb.Append($"\nTLB shootdowns: {Units.Count(s.Count)} vCPU flushes ({string.Join(", ", steps)});"
                + $" wait p50 {Units.Duration(s.P50Ns)}, p99 {Units.Duration(s.P99Ns)}, max {Units.Duration(s.MaxNs)}\n");
        }

        if (r.Host is { } h)
        {
            sb.Append('\n');
            var ht = new TextTable();
            ht.Heading("host");
            ht.Row("  host frames (free at the end)", $"{Units.Count(h.FramesTotal)} ({Units.Count(h.FramesFree)} free)");
            ht.Row("  pages written to swap", Units.Count(h.PageOuts));
            ht.Row("  pages read back from swap", Units.Count(h.SwapIns));
            ht.Row("  faults answered from the swap cache", Units.Count(h.SwapCacheHits));
            ht.Row("  pages zero-filled (first touch or discard)", Units.Count(h.ZeroFills));
            if (h.WriteErrors + h.ReadErrors + h.ChecksumErrors > 0)
            {
                ht.Row("  swap write errors", Units.Count(h.WriteErrors));
                ht.Row("  swap read errors", Units.Count(h.ReadErrors));
                ht.Row("  pages read back corrupted (checksum)", Units.Count(h.ChecksumErrors));
            }
            else ht.Row("  swap errors", "none");
            foreach (var (name, value) in h.Other) ht.Row($"  {Words(name)}", Units.Count(value));
            ht.AppendTo(sb);
        }

        if (r.Shadow is { } shadow)
        {
            sb.Append('\n');
            var st = new TextTable();
            st.Heading("shadow MMU");
            foreach (var (name, value) in shadow) st.Row($"  {ShadowWords(name)}", Units.Count(value));
            st.AppendTo(sb);
        }

        sb.Append(r.Checker.Enabled
            ? $"\nchecker: on, {Plural(r.Checker.Violations, "violation")}\n"
            : "\nchecker: off (--check turns it on)\n");

        if (r.Phases.Count > 1)
        {
            sb.Append('\n');
            var pt = new TextTable();
            pt.Row("phase", "instructions", "wall", "MIPS", "faults: present", "zero-fill", "swap-cache hit", "swap-in", "invalidations", "inval p50");
            foreach (var p in r.Phases)
            {
                var f = p.Faults;
                pt.Row($"  {p.Name}", Units.Count(p.Instructions), Units.Seconds(p.WallSeconds), Mips(p.Mips),
                    Units.Count(f.Present.Count), Units.Count(f.ZeroFill.Count), Units.Count(f.SwapCacheHit.Count), Units.Count(f.SwapIn.Count),
                    Units.Count(p.Invalidations.Count), p.Invalidations.Count == 0 ? "-" : Units.Duration(p.Invalidations.P50Ns));
            }
            pt.AppendTo(sb);
        }
        return sb.ToString();
    }

    /// <summary><c>settings: memory=64M vcpus=2 check=true ...</c> (also the plots' subtitle).</summary>
    public static string SettingsLine(IReadOnlyDictionary<string, string> settings) =>
        "settings: " + (settings.Count == 0 ? "(defaults)" : string.Join(' ', settings.Select(kv => $"{kv.Key}={kv.Value}")));

    internal static IEnumerable<(string Name, InvalidationFigures Figures)> Events(InvalidationsByEvent e) =>
    [
        ("reclaim", e.Reclaim), ("page-out", e.PageOut), ("discard", e.Discard),
        ("unmap", e.Unmap), ("protect", e.Protect), ("teardown", e.Teardown),
    ];

    private static void LatencyRow(TextTable t, string name, LatencyFigures f)
    {
        if (f.Count == 0) t.Row(name, "none");
        else t.Row(name, Units.Count(f.Count), Units.Duration(f.P50Ns), Units.Duration(f.P90Ns),
            Units.Duration(f.P99Ns), Units.Duration(f.P999Ns), Units.Duration(f.MaxNs));
    }

    private static void InvalidationRow(TextTable t, string name, long count, long pages, long p50, long p90, long p99, long p999, long max) =>
        t.Row(name, Units.Count(count), Units.Duration(p50), Units.Duration(p90), Units.Duration(p99),
            Units.Duration(p999), Units.Duration(max), Units.Count(pages));

    private static string Mips(double mips) =>
        mips.ToString(mips < 10 ? "0.00" : mips < 100 ? "0.0" : "0", CultureInfo.InvariantCulture);

    private static string Plural(long n, string noun) => $"{Units.Count(n)} {noun}{(n == 1 ? "" : "s")}";

    /// <summary>A camelCase counter name as words for the table: <c>cleanPagesDropped</c> reads "clean pages dropped".</summary>
    /// <summary>A shadow counter in words (the report's names, docs/DESIGN.md "The shadow MMU").</summary>
    private static string ShadowWords(string name) => name switch
    {
        "writeProtectTraps" => "guest page-table writes trapped",
        "trapZaps" => "shadow entries those writes zapped",
        "writeProtects" => "guest page tables made read-only",
        "pagesCreated" => "shadow pages built",
        "pagesZapped" => "shadow pages zapped",
        "pagesRecycled" => "shadow pages recycled at the bound",
        "pagesLive" => "shadow pages live",
        "rootsCached" => "roots cached",
        "rootHits" => "fills that found their root cached",
        "rootMisses" => "roots built",
        "fills" => "leaf entries installed",
        "fillRetries" => "fills that walked again",
        _ => Words(name),
    };

    internal static string Words(string camelCase) =>
        System.Text.RegularExpressions.Regex.Replace(camelCase, "(?<=[a-z0-9])([A-Z])", m => " " + char.ToLowerInvariant(m.Value[0]));
}
