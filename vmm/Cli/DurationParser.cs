using System.Globalization;

namespace ToyVmm.Cli;

/// <summary>
/// Parses durations such as <c>5ms</c>, <c>2s</c>, <c>1.5s</c> or <c>250us</c>. A unit is
/// required: a bare <c>5</c> could mean milliseconds or seconds, and a schedule that is
/// off by a factor of 1000 looks like a working one.
/// </summary>
public static class DurationParser
{
    // Longest suffix first, so "5ms" is not read as "5m" + "s".
    private static readonly (string Suffix, long TicksPerUnit)[] Units =
    [
        ("us", TimeSpan.TicksPerMicrosecond),
        ("ms", TimeSpan.TicksPerMillisecond),
        ("s", TimeSpan.TicksPerSecond),
    ];

    /// <summary>The longest duration accepted (one day): anything longer is a typo.</summary>
    public static readonly TimeSpan Max = TimeSpan.FromDays(1);

    public static bool TryParse(string text, out TimeSpan duration, out string error)
    {
        duration = TimeSpan.Zero;
        error = "";
        string s = text.Trim();
        foreach (var (suffix, ticksPerUnit) in Units)
        {
            if (!s.EndsWith(suffix, StringComparison.OrdinalIgnoreCase)) continue;
            string number = s[..^suffix.Length];
            if (number.Length == 0 || !number.All(c => char.IsAsciiDigit(c) || c == '.') ||
                !decimal.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out decimal n))
            {
                error = $"'{text}' is not a duration (examples: 5ms, 2s, 1.5s, 250us)";
                return false;
            }
            decimal ticks = n * ticksPerUnit;
            if (ticks > Max.Ticks)
            {
                error = $"'{text}' is longer than a day";
                return false;
            }
            if (ticks != decimal.Truncate(ticks))
            {
                error = $"'{text}' is finer than 0.1us";
                return false;
            }
            duration = TimeSpan.FromTicks((long)ticks);
            return true;
        }
        error = s.Length > 0 && s.All(c => char.IsAsciiDigit(c) || c == '.')
            ? $"'{text}' has no unit (write e.g. {s}ms, {s}s or {s}us)"
            : $"'{text}' is not a duration (examples: 5ms, 2s, 1.5s, 250us)";
        return false;
    }

    /// <summary>Formats <paramref name="duration"/> in the largest of s, ms, us that keeps it whole.</summary>
    public static string Format(TimeSpan duration) =>
        duration.Ticks % TimeSpan.TicksPerSecond == 0 ? $"{duration.Ticks / TimeSpan.TicksPerSecond}s" :
        duration.Ticks % TimeSpan.TicksPerMillisecond == 0 ? $"{duration.Ticks / TimeSpan.TicksPerMillisecond}ms" :
        duration.Ticks % TimeSpan.TicksPerMicrosecond == 0 ? $"{duration.Ticks / TimeSpan.TicksPerMicrosecond}us" :
        string.Create(CultureInfo.InvariantCulture, $"{duration.Ticks / (double)TimeSpan.TicksPerMicrosecond}us");
}
