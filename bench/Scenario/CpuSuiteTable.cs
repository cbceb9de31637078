using System.Globalization;
using System.Text.RegularExpressions;

namespace ToyVmm.Bench.Scenario;

/// <summary>The arguments of the cpusuite comparison: <c>[runs] [guest...]</c>.</summary>
internal sealed record CpuSuiteArgs(int Runs, IReadOnlyList<string> Guests)
{
    public const int DefaultRuns = 5;
    public const int MaxRuns = 1000;
    public static readonly IReadOnlyList<string> DefaultGuests = ["cpusuite", "cpusuite-sse"];

    /// <summary>
    /// Parses <c>[runs] [guest...]</c>: an optional run count (1..<see cref="MaxRuns"/>) first, then
    /// guest names (files guest/build/NAME.elf and guest/build/native/NAME, so a bare name, no path).
    /// On bad input returns false with a one-line <paramref name="error"/>.
    /// </summary>
    public static bool TryParse(IReadOnlyList<string> args, out CpuSuiteArgs parsed, out string? error)
    {
        parsed = new CpuSuiteArgs(DefaultRuns, DefaultGuests);
        error = null;
        int runs = DefaultRuns;
        int first = 0;
        if (args.Count > 0 && LooksNumeric(args[0]))
        {
            if (!int.TryParse(args[0], NumberStyles.None, CultureInfo.InvariantCulture, out runs) || runs < 1 || runs > MaxRuns)
            {
                error = $"runs must be a whole number from 1 to {MaxRuns}, not '{args[0]}'";
                return false;
            }
            first = 1;
        }
        var guests = new List<string>();
        for (int i = first; i < args.Count; i++)
        {
            if (!GuestName.IsMatch(args[i]))
            {
                error = $"'{args[i]}' is not a guest name (a name from guest/build without .elf, such as cpusuite)";
                return false;
            }
            guests.Add(args[i]);
        }
        parsed = new CpuSuiteArgs(runs, guests.Count > 0 ? guests : DefaultGuests);
        return true;
    }

    private static bool LooksNumeric(string a) => a.Length > 0 && (char.IsAsciiDigit(a[0]) || a[0] is '-' or '+');

    private static readonly Regex GuestName = new("^[A-Za-z0-9][A-Za-z0-9_-]*$", RegexOptions.CultureInvariant);
}

/// <summary>One run of one configuration: wall-clock and CPU seconds.</summary>
internal readonly record struct CpuSuiteSample(double WallSeconds, double CpuSeconds);

/// <summary>A configuration's medians over its runs.</summary>
internal sealed record CpuSuiteRow(string Name, double WallSeconds, double CpuSeconds);

/// <summary>
/// The cpusuite comparison's table: per configuration the median wall-clock and CPU time, MIPS
/// on both clocks (the guest's instruction count over the time), and the ratios of its time to
/// native's and to qemu-user's; then the ratios between configurations (tiered over interpreter,
/// EPT and EPT under pressure over flat memory). No measuring here: the numbers come from
/// <c>CpuSuiteScenario</c>, so this part is unit-tested.
/// </summary>
internal static class CpuSuiteTable
{
    public const string Native = "native";
    public const string Qemu = "qemu-user";
    public static readonly string[] Memories = ["flat", "EPT", "EPT+pressure"];
    public static string Vm(bool tiered, string memory) => $"{(tiered ? "tiered" : "interpreter")}, {memory}";

    public static CpuSuiteRow Median(string name, IReadOnlyList<CpuSuiteSample> samples)
    {
        if (samples.Count == 0) throw new ArgumentException($"{name}: no runs", nameof(samples));
        return new CpuSuiteRow(name, ScenarioTools.Median(samples.Select(s => s.WallSeconds)), ScenarioTools.Median(samples.Select(s => s.CpuSeconds)));
    }

    /// <summary>
    /// The table of one guest: a header and one line per row, in the rows' order. Ratios are this
    /// row's time over the reference's (2.0x = half the MIPS), on each clock; "-" where the
    /// reference row is absent (qemu-user not installed).
    /// </summary>
    public static IReadOnlyList<string> Format(string guest, long instructions, int runs, IReadOnlyList<CpuSuiteRow> rows)
    {
        var native = rows.FirstOrDefault(r => r.Name == Native);
        var qemu = rows.FirstOrDefault(r => r.Name == Qemu);
        var lines = new List<string>
        {
            Invariant($"{guest}: {instructions / 1e6:F1} M guest instructions; medians of {runs} alternating runs; each pair is wall-clock | CPU time"),
            $"  {"configuration",-26} {"time ms",19}   {"MIPS",15}   {"x native",13}   {"x qemu-user",13}",
        };
        foreach (var r in rows)
        {
            lines.Add(Invariant($"  {r.Name,-26} {r.WallSeconds * 1e3,8:F1} | {r.CpuSeconds * 1e3,8:F1}   {Mips(instructions, r.WallSeconds),6:F0} | {Mips(instructions, r.CpuSeconds),6:F0}   ") +
                      $"{Ratio(r, native),13}   {Ratio(r, qemu),13}");
        }
        return lines;
    }

    /// <summary>
    /// The ratios between configurations: tiered over interpreter MIPS on each memory, and each
    /// mode's MIPS on EPT and on EPT under pressure as a share of flat memory; pairs with a row
    /// missing are left out.
    /// </summary>
    public static IReadOnlyList<string> Ratios(IReadOnlyList<CpuSuiteRow> rows)
    {
        CpuSuiteRow? Find(string name) => rows.FirstOrDefault(r => r.Name == name);
        var lines = new List<string>();
        var tierParts = new List<string>();
        foreach (var m in Memories)
            if (Find(Vm(false, m)) is { } i && Find(Vm(true, m)) is { } t)
                tierParts.Add(Invariant($"{m} {i.WallSeconds / t.WallSeconds:F2}x | {i.CpuSeconds / t.CpuSeconds:F2}x"));
        if (tierParts.Count > 0) lines.Add("  tiered/interpreter MIPS: " + string.Join("; ", tierParts));
        foreach (bool tiered in new[] { false, true })
        {
            if (Find(Vm(tiered, "flat")) is not { } flat) continue;
            var parts = new List<string>();
            foreach (var m in Memories.Skip(1))
                if (Find(Vm(tiered, m)) is { } r)
                    parts.Add(Invariant($"{m} {flat.WallSeconds / r.WallSeconds:P0} | {flat.CpuSeconds / r.CpuSeconds:P0}"));
            if (parts.Count > 0) lines.Add($"  {(tiered ? "tiered" : "interpreter")} MIPS as a share of flat memory: " + string.Join("; ", parts));
        }
        return lines;
    }

    /// <summary>The time-to-first-instruction line of one mode: the median of the whole runs of a guest that exits at once.</summary>
    public static string FirstInstruction(string guest, string mode, IReadOnlyList<double> milliseconds) =>
        Invariant($"time to first instruction ({guest}, whole run, {mode}): {ScenarioTools.Median(milliseconds):F2} ms median of {milliseconds.Count}");

    private static double Mips(long instructions, double seconds) => seconds > 0 ? instructions / seconds / 1e6 : 0;

    private static string Ratio(CpuSuiteRow r, CpuSuiteRow? reference) =>
        reference is null || reference.WallSeconds <= 0 || reference.CpuSeconds <= 0
            ? "-"
            : Invariant($"{r.WallSeconds / reference.WallSeconds:F1} | {r.CpuSeconds / reference.CpuSeconds:F1}");

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
