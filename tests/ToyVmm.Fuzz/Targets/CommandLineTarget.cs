using System.Text;
using ToyVmm.Cli;

namespace ToyVmm.Fuzz;

/// <summary>
/// The command line and its config layers: the bytes are up to three NUL-separated
/// parts, read as UTF-8,
/// <code>
///   the command line, one argument per line
///   [NUL] the contents of ./toyvmm.json
///   [NUL] environment variables, one NAME=VALUE per line
/// </code>
/// parsed by <see cref="CommandLine.Parse"/> in a fresh working folder, and, when that
/// gives options, checked by <see cref="RunOptionsValidator"/> (with any file it would
/// write moved into that folder, so fuzzing never writes elsewhere). Checked: nothing
/// throws; a usage error, or a validator's failure, is one non-empty line; a parse gives
/// exactly one of options, help/version text or an error.
/// </summary>
internal static class CommandLineTarget
{
    public static readonly FuzzTarget Target = new("cli",
        "arguments NUL config file NUL environment: one-line usage errors, never an exception", Run);

    private static void Run(byte[] data)
    {
        string text = Encoding.UTF8.GetString(data);
        string[] parts = text.Split('\0', 3);
        var args = parts[0].Length == 0 ? [] : parts[0].Split('\n');
        var variables = new Dictionary<string, string>();
        if (parts.Length > 2)
            foreach (string line in parts[2].Split('\n'))
                if (line.IndexOf('=') is int eq and > 0) variables[line[..eq]] = line[(eq + 1)..];

        var dir = Directory.CreateTempSubdirectory("toyvmm-fuzz-cli-");
        try
        {
            if (parts.Length > 1) File.WriteAllText(Path.Combine(dir.FullName, RunConfiguration.DefaultFileName), parts[1]);
            var result = CommandLine.Parse(args, new CliEnvironment(dir.FullName, variables));
            int given = (result.Options is null ? 0 : 1) + (result.Output is null ? 0 : 1) + (result.Error is null ? 0 : 1);
            if (given != 1) throw new FuzzFinding($"the parse gave {given} of options, output and error");
            if (result.Error is { } error) CheckOneLine(error, "usage error");
            if (result.Options is not { } o) return;
            o.ReportPath = Inside(dir.FullName, o.ReportPath);
            o.TracePath = Inside(dir.FullName, o.TracePath);
            o.PlotDirectory = Inside(dir.FullName, o.PlotDirectory);
            o.SwapFile = Inside(dir.FullName, o.SwapFile);
            foreach (var failure in RunOptionsValidator.Check(o))
                CheckOneLine(failure.Describe(result.Sources), "validation failure");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static void CheckOneLine(string message, string what)
    {
        if (string.IsNullOrWhiteSpace(message)) throw new FuzzFinding($"an empty {what}");
        if (message.Contains('\n') || message.Contains('\r')) throw new FuzzFinding($"a {what} of more than one line: {message}");
    }

    /// <summary>A path the validator would create a file beside, moved into the scratch folder under a name made of its letters.</summary>
    private static string? Inside(string dir, string? path)
    {
        if (path is null) return null;
        var name = new string(path.Where(char.IsAsciiLetterOrDigit).Take(40).ToArray());
        return Path.Combine(dir, name.Length == 0 ? "out" : name);
    }
}
