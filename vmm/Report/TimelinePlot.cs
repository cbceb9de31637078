using ScottPlot;

namespace ToyVmm.Report;

/// <summary>
/// <c>timeline.png</c>: faults, invalidations and pages paged out per 10 ms as steps on
/// the left axis, free frames on the right axis, and a labelled line where each phase
/// begins. Per-phase averages (no trace) are drawn the same way, one step per phase,
/// with a note saying so.
/// </summary>
internal static class TimelinePlot
{
    public static Plot Draw(TimelineSeries s, string heading)
    {
        var plot = new Plot();
        Plots.UseAvailableFonts(plot);
        plot.Title(heading, size: 14);
        plot.XLabel("time since the VM started (s)");
        plot.YLabel(s.FromTimeline ? "per 10 ms" : "per 10 ms (average over each phase)");
        var palette = new ScottPlot.Palettes.Category10();

        Step(plot, s, s.Faults, "faults", palette.GetColor(0));
        Step(plot, s, s.Invalidations, "invalidations", palette.GetColor(1));
        Step(plot, s, s.PagesPagedOut, "pages paged out", palette.GetColor(2));
        double peak = new[] { s.Faults, s.Invalidations, s.PagesPagedOut }.SelectMany(v => v).DefaultIfEmpty(0).Max();
        plot.Axes.SetLimitsY(0, Math.Max(1, peak * 1.15));   // room above the highest step for the phase names

        if (s.FreeFrames.Length > 0)
        {
            var free = plot.Add.Scatter(s.CounterSeconds, s.FreeFrames, palette.GetColor(3));
            free.MarkerSize = 0;
            free.LineWidth = 2;
            free.LinePattern = LinePattern.Dashed;
            free.LegendText = "free frames (right axis)";
            free.Axes.YAxis = plot.Axes.Right;
            plot.Axes.Right.Label.Text = "free host frames";
            plot.Axes.SetLimitsY(0, Math.Max(1, s.FreeFrames.Max() * 1.1), plot.Axes.Right);
        }

        double yTop = Math.Max(1, peak * 1.15);
        foreach (var (at, name) in s.Phases)
        {
            var line = plot.Add.VerticalLine(at, 1, Colors.Black.WithAlpha(0.5));
            line.LinePattern = LinePattern.Dotted;
            // The name inside the plot, just right of the line, so it never meets the title.
            var label = plot.Add.Text($" {name}", at, yTop);
            label.LabelFontSize = 12;
            label.LabelAlignment = Alignment.UpperLeft;
        }
        if (!s.FromTimeline)
            plot.Add.Annotation("no trace recorded: each step is a phase's average (run with --trace for 10 ms buckets and free frames)",
                Alignment.UpperRight);
        plot.Axes.SetLimitsX(0, Math.Max(s.Edges[^1], TimelineSeries.BucketSeconds));
        plot.ShowLegend(Edge.Bottom);
        return plot;
    }

    private static void Step(Plot plot, TimelineSeries s, double[] values, string label, Color color)
    {
        // One point per bucket start, plus the last edge, drawn as horizontal steps.
        double[] ys = [.. values, values.Length > 0 ? values[^1] : 0];
        var line = plot.Add.Scatter(s.Edges, ys, color);
        line.ConnectStyle = ConnectStyle.StepHorizontal;
        line.MarkerSize = 0;
        line.LineWidth = 1.5f;
        line.LegendText = label;
    }
}
