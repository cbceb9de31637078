using System.Globalization;

namespace ToyVmm.Cli;

/// <summary>Parses sizes such as <c>64M</c>, <c>1G</c>, <c>512K</c> or <c>4194304</c> (binary units).</summary>
public static class SizeParser
{
    public static bool TryParse(string text, out ulong bytes, out string error)
    {
        bytes = 0;
        error = "";
        var s = text.Trim();
        if (s.EndsWith("iB", StringComparison.OrdinalIgnoreCase)) s = s[..^2];
        else if (s.EndsWith('B') || s.EndsWith('b')) s = s[..^1];
        int shift = 0;
        if (s.Length > 0)
        {
            switch (char.ToUpperInvariant(s[^1]))
            {
                case 'K': shift = 10; break;
                case 'M': shift = 20; break;
                case 'G': shift = 30; break;
                case 'T': shift = 40; break;
            }
            if (shift != 0) s = s[..^1];
        }
        if (s.Length == 0 || !s.All(char.IsAsciiDigit) ||
            !ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out ulong n))
        {
            error = $"'{text}' is not a size (examples: 64M, 1G, 512K, 4194304)";
            return false;
        }
        if (n > (ulong.MaxValue >> shift))
        {
            error = $"'{text}' is too large";
            return false;
        }
        bytes = n << shift;
        return true;
    }

    /// <summary>Formats <paramref name="bytes"/> in the largest binary unit that divides it.</summary>
    public static string Format(ulong bytes) =>
        bytes != 0 && bytes % (1UL << 30) == 0 ? $"{bytes >> 30}G" :
        bytes != 0 && bytes % (1UL << 20) == 0 ? $"{bytes >> 20}M" :
        bytes != 0 && bytes % (1UL << 10) == 0 ? $"{bytes >> 10}K" : bytes.ToString(CultureInfo.InvariantCulture);
}
