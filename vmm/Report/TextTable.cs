using System.Text;

namespace ToyVmm.Report;

/// <summary>
/// Rows of cells laid out in aligned columns: the first column left-aligned, the
/// others right-aligned (numbers and units line up on their last character).
/// A row of one cell is a heading and does not widen the first column.
/// </summary>
public sealed class TextTable
{
    private readonly List<string[]> _rows = new();

    public TextTable Heading(string text) { _rows.Add([text]); return this; }

    public TextTable Row(params string[] cells) { _rows.Add(cells); return this; }

    public void AppendTo(StringBuilder sb, string indent = "")
    {
        int columns = _rows.Max(r => r.Length);
        var widths = new int[columns];
        foreach (var row in _rows.Where(r => r.Length > 1))
            for (int i = 0; i < row.Length; i++) widths[i] = Math.Max(widths[i], row[i].Length);
        foreach (var row in _rows)
        {
            var line = new StringBuilder(indent);
            if (row.Length == 1) line.Append(row[0]);
            else
                for (int i = 0; i < row.Length; i++)
                {
                    if (i == 0) line.Append(row[i].PadRight(widths[0]));
                    else line.Append("  ").Append(row[i].PadLeft(widths[i]));
                }
            sb.Append(line.ToString().TrimEnd()).Append('\n');
        }
    }

    public override string ToString()
    {
        var sb = new StringBuilder();
        AppendTo(sb);
        return sb.ToString();
    }
}
