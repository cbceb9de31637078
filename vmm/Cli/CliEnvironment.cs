namespace ToyVmm.Cli;

/// <summary>
/// What <c>toyvmm</c> reads from its surroundings besides the command line: the working
/// folder (where <c>toyvmm.json</c> is looked for and a relative <c>--config</c> starts)
/// and the environment variables. Tests pass their own so they never touch the
/// process's.
/// </summary>
/// <param name="WorkingDirectory">The folder holding the default config file.</param>
/// <param name="Variables">The environment variables; null reads the process's through the configuration's environment provider.</param>
public sealed record CliEnvironment(string WorkingDirectory, IReadOnlyDictionary<string, string>? Variables = null)
{
    /// <summary>The process's working folder and environment.</summary>
    public static CliEnvironment FromProcess() => new(Directory.GetCurrentDirectory());
}
