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
        textWriter.Write("toyvmm: ");
        textWriter.Write(level);
        textWriter.WriteLine(message.ReplaceLineEndings(" "));
    }
}
