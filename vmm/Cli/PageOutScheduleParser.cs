using System.Globalization;
using ToyVmm.Vm;

namespace ToyVmm.Cli;

/// <summary>
/// Parses one <c>--pageout</c> schedule into a <see cref="PageOutSchedule"/>:
/// <list type="bullet">
/// <item><c>every=5ms[,pages=N][,pick=random|cold|hot|sweep]</c> (<see cref="PeriodicPageOut"/>)</item>
/// <item><c>at=2s,fraction=0.5[,pick=...]</c> (<see cref="BurstPageOut"/>)</item>
/// <item><c>shrink=16M@1s</c> (<see cref="HostShrink"/>)</item>
/// </list>
/// Keys are comma-separated <c>key=value</c> pairs in any order; durations need a unit
/// (<see cref="DurationParser"/>), sizes use <see cref="SizeParser"/>. Each error names
/// the key and the value at fault, without the option name (the caller adds where the
/// schedule came from).
/// </summary>
public static class PageOutScheduleParser
{
    /// <summary>The shortest <c>every=</c>: below this the page-outs would be a busy loop, not pressure.</summary>
    public static readonly TimeSpan MinEvery = TimeSpan.FromTicks(100 * TimeSpan.TicksPerMicrosecond);

    /// <summary>The most pages one periodic page-out may take (4 GiB of 4 KiB pages).</summary>
    public const int MaxPages = 1 << 20;

    public const string Syntax = "every=DURATION[,pages=N][,pick=P] | at=DURATION,fraction=F[,pick=P] | shrink=SIZE@DURATION";

    private static readonly string[] KindKeys = ["every", "at", "shrink"];

    // The keys each kind takes besides its own; a key outside these is refused with the list.
    private static readonly Dictionary<string, string[]> KeysOfKind = new(StringComparer.Ordinal)
    {
        ["every"] = ["every", "pages", "pick"],
        ["at"] = ["at", "fraction", "pick"],
        ["shrink"] = ["shrink"],
    };

    private static readonly string[] AllKeys = ["every", "at", "shrink", "pages", "pick", "fraction"];

    public static bool TryParse(string text, out PageOutSchedule? schedule, out string error)
    {
        schedule = null;
        if (!TrySplit(text, out var pairs, out error)) return false;

        string[] kinds = [.. KindKeys.Where(pairs.ContainsKey)];
        if (kinds.Length == 0)
        {
            error = $"'{text}' says neither every=, at= nor shrink= (syntax: {Syntax})";
            return false;
        }
        if (kinds.Length > 1)
        {
            error = $"{string.Join(" and ", kinds.Select(k => k + "="))} cannot be combined: give each schedule its own --pageout";
            return false;
        }
        string kind = kinds[0];
        foreach (string key in pairs.Keys)
        {
            if (!KeysOfKind[kind].Contains(key))
            {
                error = $"'{key}' does not go with {kind}= ({kind}= takes {string.Join(", ", KeysOfKind[kind].Where(k => k != kind))})";
                if (kind == "shrink") error = $"'{key}' does not go with shrink= (shrink=SIZE@DURATION takes nothing else)";
                return false;
            }
        }

        return kind switch
        {
            "every" => TryPeriodic(pairs, out schedule, out error),
            "at" => TryBurst(pairs, out schedule, out error),
            _ => TryShrink(pairs["shrink"], out schedule, out error),
        };
    }

    private static bool TrySplit(string text, out Dictionary<string, string> pairs, out string error)
    {
        pairs = new(StringComparer.Ordinal);
        error = "";
        if (string.IsNullOrWhiteSpace(text))
        {
            error = $"the schedule is empty (syntax: {Syntax})";
            return false;
        }
        foreach (string rawPart in text.Split(','))
        {
            string part = rawPart.Trim();
            if (part.Length == 0)
            {
                error = $"'{text}' has an empty part between commas";
                return false;
            }
            int eq = part.IndexOf('=');
            if (eq < 0)
            {
                error = $"'{part}' is not key=value (syntax: {Syntax})";
                return false;
            }
            string key = part[..eq].Trim().ToLowerInvariant();
            string value = part[(eq + 1)..].Trim();
            if (!AllKeys.Contains(key))
            {
                string? near = TypoSuggester.Suggest(key, AllKeys);
                error = $"unknown key '{part[..eq].Trim()}'" + (near is null ? $" (keys: {string.Join(", ", AllKeys)})" : $" (did you mean '{near}'?)");
                return false;
            }
            if (value.Length == 0)
            {
                error = $"{key}= has no value";
                return false;
            }
            if (!pairs.TryAdd(key, value))
            {
                error = $"{key}= is given twice";
                return false;
            }
        }
        return true;
    }

    private static bool TryPeriodic(Dictionary<string, string> pairs, out PageOutSchedule? schedule, out string error)
    {
        schedule = null;
        if (!TryDuration("every", pairs["every"], out var every, out error)) return false;
        if (every < MinEvery)
        {
            error = $"every: '{pairs["every"]}' is shorter than the minimum {DurationParser.Format(MinEvery)}";
            return false;
        }
        int? pages = null;
        if (pairs.TryGetValue("pages", out string? p))
        {
            if (!int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n < 1 || n > MaxPages)
            {
                error = $"pages: '{p}' is not a whole number from 1 to {MaxPages}";
                return false;
            }
            pages = n;
        }
        if (!TryPick(pairs, out var pick, out error)) return false;
        schedule = new PeriodicPageOut(every, pages, pick);
        return true;
    }

    private static bool TryBurst(Dictionary<string, string> pairs, out PageOutSchedule? schedule, out string error)
    {
        schedule = null;
        if (!TryDuration("at", pairs["at"], out var at, out error)) return false;
        if (!pairs.TryGetValue("fraction", out string? f))
        {
            error = "at= needs fraction=F, the share of the resident guest pages to page out (0 < F <= 1)";
            return false;
        }
        if (!f.All(c => char.IsAsciiDigit(c) || c == '.') ||
            !double.TryParse(f, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double fraction) ||
            !(fraction > 0 && fraction <= 1))
        {
            error = $"fraction: '{f}' is not a number greater than 0 and at most 1 (e.g. 0.5)";
            return false;
        }
        if (!TryPick(pairs, out var pick, out error)) return false;
        schedule = new BurstPageOut(at, fraction, pick);
        return true;
    }

    private static bool TryShrink(string value, out PageOutSchedule? schedule, out string error)
    {
        schedule = null;
        int atSign = value.IndexOf('@');
        if (atSign < 0)
        {
            error = $"shrink: '{value}' is not SIZE@DURATION (e.g. shrink=16M@1s)";
            return false;
        }
        string size = value[..atSign], when = value[(atSign + 1)..];
        if (!SizeParser.TryParse(size, out ulong bytes, out string sizeError))
        {
            error = $"shrink: {sizeError}";
            return false;
        }
        if (bytes == 0 || bytes % 4096 != 0)
        {
            error = $"shrink: '{size}' must be a positive multiple of 4K";
            return false;
        }
        if (!TryDuration("shrink", when, out var at, out error)) return false;
        schedule = new HostShrink(bytes, at);
        return true;
    }

    private static bool TryDuration(string key, string value, out TimeSpan duration, out string error)
    {
        if (DurationParser.TryParse(value, out duration, out error)) return true;
        error = $"{key}: {error}";
        return false;
    }

    private static bool TryPick(Dictionary<string, string> pairs, out PageOutPick pick, out string error)
    {
        pick = PageOutPick.Random;
        error = "";
        if (!pairs.TryGetValue("pick", out string? p)) return true;
        switch (p.ToLowerInvariant())
        {
            case "random": pick = PageOutPick.Random; return true;
            case "cold": pick = PageOutPick.Cold; return true;
            case "hot": pick = PageOutPick.Hot; return true;
            case "sweep": pick = PageOutPick.Sweep; return true;
            default:
                error = $"pick: '{p}' is not one of random, cold, hot, sweep";
                return false;
        }
    }

    /// <summary>The schedule in the syntax <see cref="TryParse"/> reads (defaults left out).</summary>
    public static string Format(PageOutSchedule schedule) => schedule switch
    {
        PeriodicPageOut p => $"every={DurationParser.Format(p.Every)}" +
            (p.Pages is int n ? $",pages={n}" : "") + (p.Pick != PageOutPick.Random ? $",pick={Pick(p.Pick)}" : ""),
        BurstPageOut b => $"at={DurationParser.Format(b.At)},fraction={b.Fraction.ToString(CultureInfo.InvariantCulture)}" +
            (b.Pick != PageOutPick.Random ? $",pick={Pick(b.Pick)}" : ""),
        HostShrink s => $"shrink={SizeParser.Format(s.Bytes)}@{DurationParser.Format(s.At)}",
        _ => schedule.ToString() ?? "",
    };

    private static string Pick(PageOutPick pick) => pick.ToString().ToLowerInvariant();
}
