using System.Text;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Report;

/// <summary>
/// The checker's violation for people: the broken rule on its own line, then the
/// vCPU, the frame and the guest page, then the last events on them one per line,
/// each naming the vCPU that did it (or the thread, for the host's own threads):
/// <code>
/// MMU invariant violated: a host frame was freed before vCPU 1 flushed its TLB
///   vCPU:        1
///   host frame:  hfn:0x1a2
///   guest page:  gpa:0x12000
///   last events on the frame and the page, oldest first:
///     #1203  Install    hfn:0x1a2  gpa:0x12000  vCPU 1
///     #1207  Zap        hfn:0x1a2  gpa:0x12000  page-out driver (thread 9)
///     #1208  FrameFree  hfn:0x1a2               page-out driver (thread 9)
/// </code>
/// </summary>
public static class ViolationReport
{
    /// <param name="threadNames">Names for the host's threads by managed thread id (reclaimer, page-out driver), if known.</param>
    public static string Format(MmuViolation violation, IReadOnlyDictionary<int, string>? threadNames = null)
    {
        ArgumentNullException.ThrowIfNull(violation);
        var sb = new StringBuilder();
        sb.Append("MMU invariant violated: ").Append(violation.Rule).Append('\n');
        if (violation.Vcpu is { } v) sb.Append($"  {"vCPU:",-12} {v}\n");
        sb.Append($"  {"host frame:",-12} {violation.Frame}\n");
        sb.Append($"  {"guest page:",-12} {violation.Gpa}\n");
        if (violation.Events.Count == 0)
        {
            // A violation from an older checker: its history text is all there is.
            if (!string.IsNullOrWhiteSpace(violation.History)) sb.Append(violation.History.TrimEnd()).Append('\n');
            return sb.ToString();
        }
        sb.Append("  last events on the frame and the page, oldest first:\n");
        var rows = violation.Events.Select(e => new[]
        {
            $"    #{e.Seq}", e.Kind, e.Frame.ToString(), e.Page?.ToString() ?? "", Who(e, threadNames),
        }).ToList();
        int[] widths = [.. Enumerable.Range(0, 5).Select(i => rows.Max(r => r[i].Length))];
        foreach (var r in rows)
            sb.Append(string.Join("  ", r.Select((cell, i) => i == 4 ? cell : cell.PadRight(widths[i]))).TrimEnd()).Append('\n');
        return sb.ToString();
    }

    private static string Who(MmuCheckEvent e, IReadOnlyDictionary<int, string>? threadNames) =>
        e.Vcpu is { } v ? $"vCPU {v}"
        : threadNames is not null && threadNames.TryGetValue(e.Thread, out var name) ? $"{name} (thread {e.Thread})"
        : $"thread {e.Thread}";
}
