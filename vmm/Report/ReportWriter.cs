using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ToyVmm.Report;

/// <summary>Writes and reads the JSON report (<c>--report PATH</c>).</summary>
public static class ReportWriter
{
    /// <summary>camelCase, indented, nulls left out (sections a run does not have), numbers as numbers.</summary>
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        // Guest paths and settings are text for people; keep them readable (no \u002B for '+').
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static string ToJson(RunReport report) => JsonSerializer.Serialize(report, Options);

    /// <summary>
    /// Writes the report to <paramref name="path"/> atomically: a reader sees the old
    /// file or the whole new one, never a half-written one (temp file in the same
    /// folder, flushed, then renamed over the target).
    /// </summary>
    /// <exception cref="IOException">The folder is missing or not writable (the message names the path).</exception>
    public static void Write(RunReport report, string path) =>
        AtomicFile.Write(path, stream => JsonSerializer.Serialize(stream, report, Options));

    /// <summary>Reads a report back (for tools and tests).</summary>
    public static RunReport Read(string path)
    {
        using var stream = File.OpenRead(path);
        return JsonSerializer.Deserialize<RunReport>(stream, Options)
            ?? throw new InvalidDataException($"{path}: the report is empty");
    }
}
