using System.Globalization;

namespace ToyVmm.Report;

/// <summary>Numbers for people: durations in the unit that reads best, counts with thousands separators.</summary>
public static class Units
{
    /// <summary>
    /// A duration in the largest unit that keeps it at 1 or more: <c>152 ns</c>,
    /// <c>3.4 µs</c>, <c>12 µs</c>, <c>1.2 ms</c>, <c>2.5 s</c>. One decimal below 10,
    /// none from 10 on: two or three significant digits, about what a 3-digit
    /// histogram can vouch for.
    /// </summary>
    public static string Duration(double ns)
    {
        if (double.IsNaN(ns) || ns < 0) ns = 0;
        if (ns < 1_000) return $"{Math.Round(ns).ToString("0", CultureInfo.InvariantCulture)} ns";
        var (value, unit) = ns switch
        {
            < 999_500 => (ns / 1e3, "µs"),
            < 999_500_000 => (ns / 1e6, "ms"),
            _ => (ns / 1e9, "s"),
        };
        return $"{Scaled(value)} {unit}";
    }

    /// <summary>A duration given in seconds (the wall time): <c>850 ms</c>, <c>3.2 s</c>, <c>75 s</c>.</summary>
    public static string Seconds(double seconds) => Duration(seconds * 1e9);

    /// <summary>A count with thousands separators: <c>1,234,567</c>.</summary>
    public static string Count(long n) => n.ToString("#,0", CultureInfo.InvariantCulture);

    /// <summary>A rate or count in short form for the progress line: <c>640</c>, <c>12.3k</c>, <c>4.1M</c>.</summary>
    public static string Short(double n)
    {
        if (double.IsNaN(n) || double.IsInfinity(n)) n = 0;
        double a = Math.Abs(n);
        if (a < 999.5) return Math.Round(n).ToString("0", CultureInfo.InvariantCulture);
        var (value, suffix) = a switch
        {
            < 999_500 => (n / 1e3, "k"),
            < 999_500_000 => (n / 1e6, "M"),
            _ => (n / 1e9, "G"),
        };
        return Math.Abs(value) < 99.95
            ? value.ToString("0.0", CultureInfo.InvariantCulture) + suffix
            : Math.Round(value).ToString("0", CultureInfo.InvariantCulture) + suffix;
    }

    private static string Scaled(double value) =>
        value < 9.95
            ? value.ToString("0.0", CultureInfo.InvariantCulture)
            : Math.Round(value).ToString("0", CultureInfo.InvariantCulture);
}
