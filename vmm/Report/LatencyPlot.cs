using ScottPlot;
using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Report;

/// <summary>
/// <c>latency.png</c>: one column per fault kind and invalidation event that happened,
/// a bar from p50 to max, and a marker at each of p50, p90, p99, p99.9 and max, on a
/// log-scaled nanosecond axis labelled in readable units.
/// </summary>
internal static class LatencyPlot
{
    private static readonly (string Label, double Percentile, MarkerShape Shape)[] Marks =
    [
        ("p50", 50, MarkerShape.FilledCircle), ("p90", 90, MarkerShape.FilledSquare), ("p99", 99, MarkerShape.FilledTriangleUp),
        ("p99.9", 99.9, MarkerShape.FilledDiamond), ("max", 100, MarkerShape.Cross),
    ];

    /// <summary>The columns: label and figures, fault kinds first, kinds with no samples left out.</summary>
    internal static List<(string Label, LatencyFigures Figures)> Columns(PhaseFigures total)
    {
        var columns = new List<(string, LatencyFigures)>();
        foreach (var kind in Enum.GetValues<FaultKind>())
            columns.Add(($"fault:\n{ReportNames.Words(kind)}", HistogramOps.Figures(HistogramOps.Of(total.Faults, kind))));
        foreach (var cause in Enum.GetValues<InvalidateCause>())
            columns.Add(($"invalidate:\n{ReportNames.Words(cause)}", HistogramOps.Figures(HistogramOps.Of(total.Invalidations, cause))));
        return columns.Where(c => c.Item2.Count > 0).ToList();
    }

    public static Plot Draw(PhaseFigures total, string heading)
    {
        var plot = new Plot();
        Plots.UseAvailableFonts(plot);
        plot.Title(heading, size: 14);
        plot.YLabel("latency (log scale)");
        var columns = Columns(total);
        if (columns.Count == 0)
        {
            plot.Add.Annotation("no faults or invalidations were recorded in this run", Alignment.MiddleCenter);
            plot.Axes.Frameless();
            return plot;
        }

        double lo = double.MaxValue, hi = 0;
        for (int i = 0; i < columns.Count; i++)
        {
            var f = columns[i].Figures;
            var bar = plot.Add.Line(i - 0.16, Log(f.P50Ns), i + 0.16, Log(f.MaxNs));
            bar.LineWidth = 6;
            bar.LineColor = Colors.Gray.WithAlpha(0.35);
            lo = Math.Min(lo, Log(f.P50Ns));
            hi = Math.Max(hi, Log(f.MaxNs));
        }
        var palette = new ScottPlot.Palettes.Category10();
        for (int m = 0; m < Marks.Length; m++)
        {
            // Each percentile a little to the right of the one before: a staircase, so equal values do not hide each other.
            double[] xs = [.. Enumerable.Range(0, columns.Count).Select(i => i + (m - (Marks.Length - 1) / 2.0) * 0.08)];
            double[] ys = [.. columns.Select(c => Log(Value(c.Figures, Marks[m].Percentile)))];
            var points = plot.Add.ScatterPoints(xs, ys, palette.GetColor(m));
            points.MarkerShape = Marks[m].Shape;
            points.MarkerSize = 11;
            points.LegendText = Marks[m].Label;
        }
        for (int i = 0; i < columns.Count; i++)
        {
            var count = plot.Add.Text($"n={Units.Count(columns[i].Figures.Count)}", i, Math.Floor(lo) - 0.05);
            count.LabelFontSize = 11;
            count.LabelAlignment = Alignment.UpperCenter;
        }

        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            [.. Enumerable.Range(0, columns.Count).Select(i => (double)i)], [.. columns.Select(c => c.Label)]);
        plot.Axes.SetLimitsX(-0.6, columns.Count - 0.4);
        double bottom = Math.Floor(lo) - 0.5, top = Math.Ceiling(hi) + 0.2;
        plot.Axes.SetLimitsY(bottom, top);
        plot.Axes.Left.TickGenerator = DecadeTicks(bottom, top);
        plot.ShowLegend(Edge.Bottom);
        return plot;
    }

    private static double Value(LatencyFigures f, double percentile) => percentile switch
    {
        50 => f.P50Ns, 90 => f.P90Ns, 99 => f.P99Ns, 99.9 => f.P999Ns, _ => f.MaxNs,
    };

    private static double Log(double ns) => Math.Log10(Math.Max(1, ns));

    /// <summary>Major ticks at each power of ten (labelled 100 ns, 1.0 µs, ...), minor ticks at 2..9.</summary>
    internal static ScottPlot.TickGenerators.NumericManual DecadeTicks(double bottom, double top)
    {
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (int d = (int)Math.Floor(bottom); d <= (int)Math.Ceiling(top); d++)
        {
            if (d >= bottom && d <= top) ticks.AddMajor(d, Units.Duration(Math.Pow(10, d)));
            for (int k = 2; k <= 9; k++)
            {
                double v = d + Math.Log10(k);
                if (v >= bottom && v <= top) ticks.AddMinor(v);
            }
        }
        return ticks;
    }
}
