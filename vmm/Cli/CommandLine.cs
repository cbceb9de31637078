using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Parsing;
using System.Reflection;

namespace ToyVmm.Cli;

/// <summary>What the command line asked for.</summary>
/// <param name="Options">The options of <c>run</c> with every layer applied (not yet validated), or null.</param>
/// <param name="Output">Help or version text: print it on standard output and exit 0.</param>
/// <param name="Error">A usage error in one line (without the <c>toyvmm: error: </c> prefix): print it with the usage line, exit 2.</param>
public sealed record CommandLineResult(RunOptions? Options, string? Output, string? Error)
{
    /// <summary>The output is help (rather than the version).</summary>
    public bool Help { get; init; }

    /// <summary>Where each setting not from the command line came from (<see cref="RunOptionsBuilder.Sources"/>).</summary>
    public IReadOnlyDictionary<string, string> Sources { get; init; } = new Dictionary<string, string>();
}

/// <summary>
/// The <c>toyvmm</c> command line, parsed with System.CommandLine: the verbs <c>run</c>
/// and <c>version</c>, <c>--version</c> and <c>--help</c>. <c>run</c>'s options are built
/// from <see cref="RunSettings"/>, and their values go through the same
/// <see cref="RunSetting.Apply"/> as the config file's and the environment's
/// (<see cref="RunConfiguration"/>), applied after them. Only syntax and value formats
/// are checked here; ranges and paths are the validator's.
/// </summary>
public static class CommandLine
{
    public const string Usage =
        "usage: toyvmm run GUEST.elf [GUEST.elf ...] [options]  |  toyvmm version  |  toyvmm --help  ('toyvmm run --help' lists the options)";

    private static readonly Command Root;
    private static readonly Command RunCommand;
    private static readonly Command VersionCommand;
    private static readonly VersionOption VersionOption;
    private static readonly Option<string> ConfigOption;
    private static readonly Argument<string[]> GuestArgument;
    private static readonly Dictionary<Option, RunSetting> SettingOf = [];

    static CommandLine()
    {
        GuestArgument = new Argument<string[]>("GUEST.elf")
        {
            // Several guests run as several VMs on one simulated host (GUEST-ABI 1.1).
            Arity = ArgumentArity.ZeroOrMore,
            Description = RunSettings.Get(RunSettings.GuestName).Description + " (may come from the config file instead)",
        };
        ConfigOption = new Option<string>("--config")
        {
            HelpName = "FILE",
            Description = $"read settings from FILE instead of ./{RunConfiguration.DefaultFileName} (see README.md \"Configuration\")",
        };
        RunCommand = new Command("run", "Run a guest in the software x86-64 CPU over the simulated host. The guest's console goes to standard output, VMM messages to standard error; the exit status is the guest's.");
        RunCommand.Arguments.Add(GuestArgument);
        foreach (var setting in RunSettings.All.Where(s => !s.IsGuest))
        {
            Option option = setting.Kind switch
            {
                SettingKind.Flag => new Option<bool>(setting.Name, setting.Aliases) { Arity = ArgumentArity.Zero },
                SettingKind.List => new Option<string[]>(setting.Name, setting.Aliases)
                {
                    Arity = ArgumentArity.OneOrMore,
                    AllowMultipleArgumentsPerToken = false,
                    HelpName = setting.HelpName,
                },
                _ => new Option<string>(setting.Name, setting.Aliases) { HelpName = setting.HelpName },
            };
            option.Description = setting.Description;
            SettingOf[option] = setting;
            RunCommand.Options.Add(option);
        }
        RunCommand.Options.Add(ConfigOption);

        VersionCommand = new Command("version", "Print the version (as --version does).");
        VersionOption = new VersionOption();
        // A plain Command named toyvmm rather than RootCommand, whose name would be the
        // host's executable (testhost, dotnet) when not run as toyvmm.
        Root = new Command("toyvmm", "ToyVmm: a teaching-and-measurement hypervisor memory manager.");
        var help = new HelpOption { Recursive = true };
        ((HelpAction)help.Action!).MaxWidth = 110;
        Root.Options.Add(help);
        Root.Options.Add(VersionOption);
        Root.Subcommands.Add(RunCommand);
        Root.Subcommands.Add(VersionCommand);
    }

    /// <summary><c>toyvmm VERSION</c>, the version being the assembly's informational version.</summary>
    public static string VersionText
    {
        get
        {
            var assembly = typeof(CommandLine).Assembly;
            string version = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
                ?? assembly.GetName().Version?.ToString() ?? "unknown";
            return $"toyvmm {version}";
        }
    }

    /// <param name="args">The command line.</param>
    /// <param name="env">The working folder and environment (the process's when null).</param>
    public static CommandLineResult Parse(IReadOnlyList<string> args, CliEnvironment? env = null)
    {
        if (args.Count == 0)
            return Fail("no command given");
        if (args[0] == "help")
            return HelpFor(args.Count > 1 && args[1] == "run" ? ["run", "--help"] : ["--help"]);
        if (FlagWithValue(args) is string flag)
            return Fail($"{flag} takes no value");

        var result = Root.Parse(args);
        if (result.Action is HelpAction)
            return HelpFor(args);
        if (DescribeError(result) is string error)
            return Fail(error);
        if (result.GetResult(VersionOption) != null || result.CommandResult.Command == VersionCommand)
            return new(null, VersionText + "\n", null);
        if (result.CommandResult.Command != RunCommand)
            return Fail("no command given");
        return BindRun(result, env ?? CliEnvironment.FromProcess());
    }

    private static CommandLineResult BindRun(ParseResult result, CliEnvironment env)
    {
        var builder = new RunOptionsBuilder();
        string? configError = RunConfiguration.Apply(builder, result.GetResult(ConfigOption)?.Tokens[0].Value, env);
        if (configError != null)
            return Fail(configError);

        // The command line last: it wins over the file and the environment.
        if (result.GetResult(GuestArgument) is { Tokens.Count: > 0 } guest)
        {
            var setting = RunSettings.Get(RunSettings.GuestName);
            if (setting.Apply(builder, guest.Tokens[0].Value) is string problem)
                return Fail($"guest: {problem}");
            builder.SetSource(setting, null);
            var more = new List<string>();
            foreach (var token in guest.Tokens.Skip(1))
            {
                if (string.IsNullOrWhiteSpace(token.Value)) return Fail("guest: the path is empty");
                more.Add(token.Value);
            }
            builder.Options.MoreGuests = more;
        }
        foreach (var (option, setting) in SettingOf)
        {
            // Implicit results are options not on the line (a flag's default): not set here.
            if (result.GetResult(option) is not OptionResult { Implicit: false } r) continue;
            string used = r.IdentifierToken?.Value ?? setting.Name;
            if (setting.Kind == SettingKind.Flag)
            {
                setting.Apply(builder, "true");
            }
            else
            {
                if (setting.Kind == SettingKind.List) builder.BeginList(setting);
                foreach (var token in r.Tokens)
                    if (setting.Apply(builder, token.Value) is string problem)
                        return Fail($"{used}: {problem}");
            }
            builder.SetSource(setting, null);
        }
        return new(builder.Build(), null, null) { Sources = new Dictionary<string, string>(builder.Sources) };
    }

    /// <summary>One line for the first thing wrong with the parse, or null when nothing is.</summary>
    private static string? DescribeError(ParseResult result)
    {
        var command = result.CommandResult.Command;

        // A value option followed by another option ("--memory --vcpus 2") took the option
        // as its value; say the value is missing rather than that "2" is a second guest.
        foreach (var (option, setting) in SettingOf)
        {
            if (setting.Kind == SettingKind.Flag || result.GetResult(option) is not OptionResult { Implicit: false } r) continue;
            // A repeated option with fewer values than occurrences ended the line without one.
            if (r.Tokens.Any(t => IsOptionName(t.Value)) || r.Tokens.Count < r.IdentifierTokenCount)
                return $"{r.IdentifierToken?.Value ?? setting.Name} needs a value";
        }
        if (result.GetResult(ConfigOption) is { } config && config.Tokens.Any(t => IsOptionName(t.Value)))
            return "--config needs a value";

        // The guest argument takes any token, "--vcpu" too; before "--", a dash-led
        // guest is an option this command does not have.
        if (result.GetResult(GuestArgument) is { Tokens.Count: > 0 } g
            && g.Tokens.FirstOrDefault(t => IsUnknownOptionToken(t.Value, result.Tokens)) is { } dashed)
            return dashed.Value == VersionOption.Name
                ? $"{VersionOption.Name} goes before any verb: toyvmm {VersionOption.Name}"
                : $"unknown option '{dashed.Value}'" + DidYouMean(dashed.Value, OptionNames(RunCommand));

        if (result.Errors.Count == 0)
            return null;

        foreach (var error in result.Errors)
        {
            if (error.SymbolResult is not OptionResult r) continue;
            string name = r.IdentifierToken?.Value ?? r.Option.Name;
            if (r.Tokens.Count == 0) return $"{name} needs a value";
            if (r.IdentifierTokenCount > 1) return $"{name} is given more than once (only --pageout may repeat)";
            return $"{name}: {error.Message}";
        }

        if (result.UnmatchedTokens.Count > 0)
        {
            string token = result.UnmatchedTokens[0];
            bool looksLikeOption = token.Length > 1 && token[0] == '-';
            if (command == Root)
            {
                if (!looksLikeOption)
                    return $"unknown command '{token}'" + DidYouMean(token, ["run", "version", "help"]);
                if (IsRunOptionName(token))
                    return $"{token} is an option of run: toyvmm run GUEST.elf {token} ...";
                return $"unknown option '{token}'" + DidYouMean(token, OptionNames(Root));
            }
            if (looksLikeOption && token == VersionOption.Name)
                return $"{token} goes before any verb: toyvmm {token}";
            if (looksLikeOption)
                return $"unknown option '{token}'" + DidYouMean(token, OptionNames(command));
            if (command == RunCommand && result.GetResult(GuestArgument) is { Tokens.Count: > 0 } guest)
                return $"more than one guest file ('{guest.Tokens[0].Value}', '{token}')";
            return $"unexpected argument '{token}'";
        }
        if (command == Root)
            return "no command given";
        return result.Errors[0].Message;
    }

    private static string DidYouMean(string typed, IEnumerable<string> candidates) =>
        TypoSuggester.Suggest(typed, candidates) is string near ? $" (did you mean {near}?)" : "";

    private static IEnumerable<string> OptionNames(Command command) =>
        command.Options.Concat(Root.Options.Where(o => o.Recursive))
            .SelectMany(o => o.Aliases.Prepend(o.Name)).Where(n => n.StartsWith("--", StringComparison.Ordinal));

    /// <summary>Whether <paramref name="token"/> is a name or alias of an option of run or of toyvmm itself.</summary>
    private static bool IsOptionName(string token) =>
        RunCommand.Options.Concat(Root.Options).Any(o => o.Name == token || o.Aliases.Contains(token));

    private static bool IsRunOptionName(string token) =>
        RunCommand.Options.Any(o => o.Name == token || o.Aliases.Contains(token));

    private static bool IsUnknownOptionToken(string value, IReadOnlyList<Token> tokens)
    {
        if (value.Length < 2 || value[0] != '-') return false;
        foreach (var token in tokens)
        {
            if (token.Type == TokenType.DoubleDash) return false;
            if (token.Value == value) return true;
        }
        return true;
    }

    /// <summary>The first <c>--flag=value</c> before <c>--</c> (System.CommandLine would take the value as the guest).</summary>
    private static string? FlagWithValue(IReadOnlyList<string> args)
    {
        foreach (string arg in args)
        {
            if (arg == "--") break;
            int eq = arg.IndexOf('=');
            if (!arg.StartsWith('-') || eq < 0) continue;
            string name = arg[..eq];
            if (SettingOf.Values.Any(s => s.Kind == SettingKind.Flag && (s.Name == name || s.Aliases.Contains(name))))
                return name;
        }
        return null;
    }

    private static CommandLineResult Fail(string error) => new(null, null, error);

    private static CommandLineResult HelpFor(IReadOnlyList<string> args)
    {
        var result = Root.Parse(args);
        var output = new StringWriter();
        result.Invoke(new InvocationConfiguration { Output = output, Error = output });
        string text = output.ToString().TrimEnd();
        if (result.CommandResult.Command == Root)
        {
            // Top-level help lists every option too: one page answers "what can run do".
            var runHelp = new StringWriter();
            Root.Parse(["run", "--help"]).Invoke(new InvocationConfiguration { Output = runHelp, Error = runHelp });
            text += "\n\n" + runHelp.ToString().TrimEnd();
        }
        return new(null, text + "\n\n" + HelpText.Epilogue, null) { Help = true };
    }
}
