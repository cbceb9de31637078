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
    /// <param name="messages">Where usage and help text go (standard error when null; help goes to standard output).</param>
    public static async Task<int> RunAsync(string[] args, Stream? guestConsole = null, TextWriter? messages = null)
    {
        var parsed = CommandLine.Parse(args);
        if (parsed.Help)
        {
            (messages ?? Console.Out).WriteLine(CommandLine.Help);
            return 0;
        }
        var err = messages ?? Console.Error;
        if (parsed.Error != null || parsed.Options == null)
        {
            err.WriteLine($"toyvmm: {parsed.Error}");
            err.WriteLine(CommandLine.Usage);
            return ExitCodes.Usage;
        }

        using var host = BuildHost(parsed.Options, guestConsole ?? Console.OpenStandardOutput());
        try
        {
            await host.StartAsync();
        }
        catch (OptionsValidationException ex)
        {
            foreach (var failure in ex.Failures)
                err.WriteLine($"toyvmm: {failure}");
            err.WriteLine(CommandLine.Usage);
            return ExitCodes.Usage;
        }
        await host.WaitForShutdownAsync();
        return host.Services.GetRequiredService<ExitStatus>().Value;
    }

    public static IHost BuildHost(RunOptions options, Stream guestConsole)
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
            .Configure(o =>
            {
                o.GuestPath = options.GuestPath;
                o.MemoryBytes = options.MemoryBytes;
                o.Vcpus = options.Vcpus;
                o.MaxInstructions = options.MaxInstructions;
                o.Verbose = options.Verbose;
                o.HostMemoryBytes = options.HostMemoryBytes;
                o.FlatMemory = options.FlatMemory;
                o.Check = options.Check;
                o.Protocol = options.Protocol;
                o.SwapFile = options.SwapFile;
                o.PageOutIntervalMs = options.PageOutIntervalMs;
                o.Stats = options.Stats;
            })
            .ValidateOnStart();
        builder.Services.AddSingleton<ExitStatus>();
        builder.Services.AddSingleton(new GuestConsoleOutput(guestConsole));
        builder.Services.AddHostedService<VmRunner>();
        return builder.Build();
    }
}
