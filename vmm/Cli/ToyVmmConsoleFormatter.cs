using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;

namespace ToyVmm.Cli;

/// <summary>
/// One line per message, <c>toyvmm: error: ...</c>, the way command-line tools
/// speak on standard error (the default console format spends two lines and a
/// category name on each message).
/// </summary>
public sealed class ToyVmmConsoleFormatter : ConsoleFormatter
{
    public const string FormatterName = "toyvmm";

    /// <summary>The event id of <see cref="Log.Stat"/>: a line of the end-of-run table, written without a prefix.</summary>
    public const int TableEventId = 11;

    public ToyVmmConsoleFormatter() : base(FormatterName) { }

    public override void Write<TState>(in LogEntry<TState> logEntry, Microsoft.Extensions.Logging.IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        string message = logEntry.Formatter(logEntry.State, logEntry.Exception);
        if (logEntry.Exception != null && logEntry.LogLevel >= LogLevel.Error)
            message += $" ({logEntry.Exception.GetType().Name}: {logEntry.Exception.Message})";
        string level = logEntry.LogLevel switch
        {
            LogLevel.Trace => "trace: ",
            LogLevel.Debug => "debug: ",
            LogLevel.Information => "",
            LogLevel.Warning => "warning: ",
            _ => "error: ",
        };
        // The end-of-run table is the program's output, not a message: its lines go out as they are.
        if (logEntry.EventId.Id == TableEventId)
        {
            textWriter.WriteLine(message);
            return;
        }
        // A message is one line; a report over several lines (the checker's) keeps
        // its lines, indented under the first so that it still reads as one message.
        var lines = message.ReplaceLineEndings("\n").TrimEnd('\n').Split('\n');
        textWriter.Write("toyvmm: ");
        textWriter.Write(level);
        textWriter.WriteLine(lines[0]);
        for (int i = 1; i < lines.Length; i++)
        {
            textWriter.Write("    ");
            textWriter.WriteLine(lines[i]);
        }
    }
}
