using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace ToyVmm.Cli;

/// <summary>
/// The <c>toyvmm</c> program: parses the command line, builds a .NET Generic Host
/// with the validated options, logging to standard error and the <see cref="VmRunner"/>,
/// runs it and returns the exit status (README.md "Exit status").
/// </summary>
public static class ToyVmmApp
{
    /// <param name="args">The command line.</param>
    /// <param name="guestConsole">Where the guest console goes (standard output when null).</param>
    /// <param name="messages">Where usage errors, help and version go (when null: errors to standard error, help and version to standard output).</param>
    /// <param name="env">The working folder and environment variables settings are read from (the process's when null).</param>
    public static async Task<int> RunAsync(string[] args, Stream? guestConsole = null, TextWriter? messages = null, CliEnvironment? env = null)
    {
        var parsed = CommandLine.Parse(args, env);
        if (parsed.Output != null)
        {
            (messages ?? Console.Out).Write(parsed.Output);
            return 0;
        }
        var err = messages ?? Console.Error;
        if (parsed.Error != null || parsed.Options == null)
            return UsageError(err, parsed.Error ?? "no command given");

        // Every check before anything runs; the host's own ValidateOnStart repeats them.
        var failures = RunOptionsValidator.Check(parsed.Options);
        if (failures.Count > 0)
            return UsageError(err, string.Join("; ", failures.Select(f => f.Describe(parsed.Sources))));
        // Only now, with every check passed, does the run leave anything on disk.
        if (parsed.Options.PlotDirectory is string plots)
        {
            try
            {
                Directory.CreateDirectory(plots);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                return UsageError(err, new RunOptionsFailure("--plot", $"cannot create {plots}: {ex.Message}", Sentence: true).Describe(parsed.Sources));
            }
        }

        // Signals are the program's: a test that passes its own console keeps its process's handlers.
        using var host = BuildHost(parsed.Options, guestConsole ?? StandardOutput(), guestConsole is null ? err : null);
        try
        {
            await host.StartAsync();
        }
        catch (OptionsValidationException ex)
        {
            return UsageError(err, string.Join("; ", ex.Failures));
        }
        await host.WaitForShutdownAsync();
        return host.Services.GetRequiredService<ExitStatus>().Value;
    }

    /// <summary>
    /// Standard output for the guest console. On Unix a plain stream on descriptor 1,
    /// not Console.OpenStandardOutput(), which drops writes to a closed pipe silently:
    /// the console must see EPIPE to stop the run.
    /// </summary>
    private static Stream StandardOutput() => OperatingSystem.IsWindows()
        ? Console.OpenStandardOutput()
        : new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(1, ownsHandle: false), FileAccess.Write, bufferSize: 0);

    /// <summary>A usage error: one line naming the problem, the usage line, status 2.</summary>
    private static int UsageError(TextWriter err, string message)
    {
        err.WriteLine($"toyvmm: error: {message}");
        err.WriteLine(CommandLine.Usage);
        return ExitCodes.Usage;
    }

    /// <param name="signalMessages">When not null: handle SIGINT/SIGTERM/SIGHUP in every phase (<see cref="InterruptWatchdog"/>), saying "interrupted" here.</param>
    public static IHost BuildHost(RunOptions options, Stream guestConsole, TextWriter? signalMessages = null)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings
        {
            ApplicationName = "toyvmm",
            DisableDefaults = true,
        });

        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(options.Verbose ? LogLevel.Debug : LogLevel.Information);
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        // VmRunner and RunAsync report every failure themselves, in one line each.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting", LogLevel.None);
        builder.Logging.AddConsole(c =>
        {
            c.FormatterName = ToyVmmConsoleFormatter.FormatterName;
            c.LogToStandardErrorThreshold = LogLevel.Trace;   // nothing of the VMM's on stdout
        });
        builder.Logging.AddConsoleFormatter<ToyVmmConsoleFormatter, ConsoleFormatterOptions>();

        builder.Services.Configure<ConsoleLifetimeOptions>(o => o.SuppressStatusMessages = true);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(10));
        builder.Services.AddSingleton<IValidateOptions<RunOptions>, RunOptionsValidator>();
        builder.Services.AddOptions<RunOptions>()
            .Configure(options.CopyTo)
            .ValidateOnStart();
        builder.Services.AddSingleton<ExitStatus>();
        builder.Services.AddSingleton(new GuestConsoleOutput(guestConsole));
        if (signalMessages is not null)
            builder.Services.AddSingleton(sp => new InterruptWatchdog(sp.GetRequiredService<IHostApplicationLifetime>(), signalMessages));
        builder.Services.AddHostedService<VmRunner>();
        return builder.Build();
    }
}
