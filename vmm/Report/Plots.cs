using ScottPlot;
using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Report;

/// <summary>
/// The plots of a run (<c>--plot DIR</c>), drawn with ScottPlot:
/// <list type="bullet">
/// <item><c>latency.png</c>: for each fault kind and invalidation event that happened,
/// its p50, p90, p99, p99.9 and max on a log-scaled latency axis.</item>
/// <item><c>timeline.png</c>: faults, invalidations and pages paged out per 10 ms, free
/// frames on the right axis, a line where each phase begins. Without a trace the
/// figures are per-phase averages per 10 ms and the plot says so.</item>
/// </list>
/// Both are titled with the guest and the settings.
/// </summary>
public static class Plots
{
    public const string LatencyFile = "latency.png";
    public const string TimelineFile = "timeline.png";
    public const int Width = 1200, Height = 700;

    /// <summary>
    /// Writes <c>latency.png</c> and <c>timeline.png</c> into <paramref name="dir"/>
    /// (created if missing) and returns their paths.
    /// </summary>
    /// <param name="title">First line: e.g. the guest; <paramref name="subtitle"/> (the settings line) goes under it, wrapped.</param>
    /// <exception cref="IOException">The folder or a file cannot be written, or the plot cannot be drawn; the message says which.</exception>
    public static IReadOnlyList<string> Write(MeasurementSnapshot snapshot, string dir, string title, string subtitle = "")
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        try { Directory.CreateDirectory(dir); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new IOException($"cannot create the plot folder {dir}: {ex.Message}", ex);
        }
        string heading = Heading(title, subtitle);
        string latency = Path.Combine(dir, LatencyFile);
        string timeline = Path.Combine(dir, TimelineFile);
        Save(LatencyPlot.Draw(snapshot.Total, heading), latency);
        var series = snapshot.Trace is { } t ? TimelineSeries.FromTrace(t) : TimelineSeries.FromPhases(snapshot.Phases);
        Save(TimelinePlot.Draw(series, heading), timeline);
        return [latency, timeline];
    }

    /// <summary>
    /// Null when the plots can be written into <paramref name="dir"/> (it exists as a
    /// writable folder, or can be created), else the one-line reason; creates nothing.
    /// </summary>
    public static string? CheckWritable(string dir)
    {
        string full;
        try { full = Path.GetFullPath(dir); }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException)
        {
            return $"cannot write plots to {dir}: {ex.Message}";
        }
        if (File.Exists(full)) return $"cannot write plots to {dir}: it is a file";
        // The nearest folder that exists must take new entries: the plot folder or the folder it will be made in.
        string existing = full;
        while (!Directory.Exists(existing))
        {
            string? parent = Path.GetDirectoryName(existing);
            if (parent is null) return $"cannot write plots to {dir}: no such folder";
            if (File.Exists(parent)) return $"cannot write plots to {dir}: {parent} is a file";
            existing = parent;
        }
        string? why = AtomicFile.CheckWritable(Path.Combine(existing, LatencyFile));
        return why is null ? null : $"cannot write plots to {dir}: {why[(why.IndexOf(": ", StringComparison.Ordinal) + 2)..]}";
    }

    /// <summary>The title: first line as given, the settings wrapped to lines that fit the image.</summary>
    public static string Heading(string title, string subtitle)
    {
        if (string.IsNullOrWhiteSpace(subtitle)) return title;
        var lines = new List<string> { title };
        var line = "";
        foreach (var word in subtitle.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.Length > 0 && line.Length + 1 + word.Length > 110) { lines.Add(line); line = ""; }
            line = line.Length == 0 ? word : $"{line} {word}";
        }
        if (line.Length > 0) lines.Add(line);
        return string.Join('\n', lines);
    }

    private static void Save(Plot plot, string path)
    {
        try
        {
            byte[] png = plot.GetImageBytes(Width, Height, ImageFormat.Png);
            AtomicFile.Write(path, s => s.Write(png));
        }
        catch (Exception ex) when (ex is TypeInitializationException or DllNotFoundException or InvalidOperationException or ArgumentException)
        {
            // SkiaSharp's native library is missing or cannot draw here: say so in one line.
            throw new IOException($"cannot draw {path}: {ex.GetBaseException().Message}", ex);
        }
    }

    /// <summary>Makes text render on a machine with few fonts: a sans family that is installed, else one that has the glyphs.</summary>
    internal static void UseAvailableFonts(Plot plot)
    {
        plot.Font.Set(Family.Value);
    }

    private static readonly string[] PreferredFamilies = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial", "Helvetica", "FreeSans"];

    // Fonts.Detect finds an installed family that can draw the given characters (µ in
    // the axis labels) but may pick a serif; with no font installed at all ScottPlot
    // falls back to its default and the plots still draw (text may be missing).
    private static readonly Lazy<string> Family = new(() =>
    {
        var installed = SkiaSharp.SKFontManager.Default.GetFontFamilies().ToHashSet(StringComparer.OrdinalIgnoreCase);
        return PreferredFamilies.FirstOrDefault(installed.Contains) ?? Fonts.Detect("µs 0123456789 pages/10 ms");
    });
}
