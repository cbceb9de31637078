using System.Globalization;

namespace ToyVmm.Cli;

/// <summary>What the command line asked for.</summary>
/// <param name="Options">The options of <c>run</c> (not yet validated), or null.</param>
/// <param name="Help">Help was asked for: print usage, exit 0.</param>
/// <param name="Error">A syntax error: print it with the usage line, exit 2.</param>
public sealed record CommandLineResult(RunOptions? Options, bool Help, string? Error);

/// <summary>
/// Turns <c>toyvmm run GUEST.elf [--memory SIZE] [--vcpus N] ...</c> into <see cref="RunOptions"/>.
/// Only syntax is checked here; ranges are the validator's.
/// </summary>
public static class CommandLine
{
    public const string Usage =
        "usage: toyvmm run GUEST.elf [--memory SIZE] [--vcpus N] [--host-memory SIZE] [--check] [--stats]\n" +
        "                  [--pageout-interval MS] [--notifier-protocol sequence|broken-2008] [--swap-file PATH]\n" +
        "                  [--flat-memory] [--max-instructions N] [--verbose]";

    public const string Help = Usage + """


          Runs GUEST.elf (a static ELF64 x86-64 executable written to the ToyVmm guest ABI)
          in a software x86-64 CPU. The guest's console goes to standard output, VMM
          messages to standard error; the exit status is the guest's (see README.md).

          --memory SIZE          guest RAM, e.g. 64M, 1G (default 64M; multiple of 1M, 4M..64G);
                                 --ram is a synonym
          --vcpus N              vCPUs, each on its own thread (default 1)
          --host-memory SIZE     the simulated host's frame pool (default: guest RAM + 1/8); guest
                                 RAM may be many times larger: the host then swaps and reclaims
          --check                run the MMU invariant checker; a violation stops the VM (exit 7)
          --stats                print where the time went (faults, invalidations, host) at exit
          --pageout-interval MS  force a page-out of a random guest range every MS milliseconds
          --notifier-protocol P  sequence (default, KVM's protocol) or broken-2008 (the race)
          --swap-file PATH       the swap file (default: a temporary file, deleted at exit)
          --flat-memory          one flat block of guest RAM: no host, no secondary MMU
          --max-instructions N   stop the VM when a vCPU has run about N instructions (exit 6)
          --verbose, -v          more VMM detail on standard error
        """;

    private delegate string? Apply(RunOptions options, string value);

    private sealed record Spec(bool TakesValue, Apply Apply);

    // One entry per option; a new option is one more line here, a property in RunOptions
    // and a check in RunOptionsValidator.
    private static readonly Dictionary<string, Spec> Options = new(StringComparer.Ordinal)
    {
        ["--memory"] = new(true, static (o, v) =>
        {
            if (!SizeParser.TryParse(v, out ulong b, out string e)) return $"--memory: {e}";
            o.MemoryBytes = b;
            return null;
        }),
        ["--ram"] = new(true, static (o, v) =>
        {
            if (!SizeParser.TryParse(v, out ulong b, out string e)) return $"--ram: {e}";
            o.MemoryBytes = b;
            return null;
        }),
        ["--vcpus"] = new(true, static (o, v) =>
        {
            if (!int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int n))
                return $"--vcpus: '{v}' is not a whole number";
            o.Vcpus = n;
            return null;
        }),
        ["--max-instructions"] = new(true, static (o, v) =>
        {
            if (!long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out long n))
                return $"--max-instructions: '{v}' is not a whole number";
            o.MaxInstructions = n;
            return null;
        }),
        ["--host-memory"] = new(true, static (o, v) =>
        {
            if (!SizeParser.TryParse(v, out ulong b, out string e)) return $"--host-memory: {e}";
            o.HostMemoryBytes = b;
            return null;
        }),
        ["--check"] = new(false, static (o, _) => { o.Check = true; return null; }),
        ["--stats"] = new(false, static (o, _) => { o.Stats = true; return null; }),
        ["--flat-memory"] = new(false, static (o, _) => { o.FlatMemory = true; return null; }),
        ["--swap-file"] = new(true, static (o, v) => { o.SwapFile = v; return null; }),
        ["--pageout-interval"] = new(true, static (o, v) =>
        {
            if (!int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int n))
                return $"--pageout-interval: '{v}' is not a whole number of milliseconds";
            o.PageOutIntervalMs = n;
            return null;
        }),
        ["--notifier-protocol"] = new(true, static (o, v) =>
        {
            switch (v)
            {
                case "sequence": o.Protocol = ToyVmm.Mmu.Notifiers.NotifierProtocol.Sequence; return null;
                case "broken-2008": o.Protocol = ToyVmm.Mmu.Notifiers.NotifierProtocol.Broken2008; return null;
                default: return $"--notifier-protocol: '{v}' is not one of sequence, broken-2008";
            }
        }),
        ["--verbose"] = new(false, static (o, _) => { o.Verbose = true; return null; }),
        ["-v"] = new(false, static (o, _) => { o.Verbose = true; return null; }),
    };

    public static CommandLineResult Parse(IReadOnlyList<string> args)
    {
        if (args.Count == 0)
            return new(null, false, "no command given");
        if (args[0] is "-h" or "--help" or "help")
            return new(null, true, null);
        if (args[0] != "run")
            return new(null, false, $"unknown command '{args[0]}'");

        var options = new RunOptions();
        string? guest = null;
        bool optionsEnded = false;
        for (int i = 1; i < args.Count; i++)
        {
            string arg = args[i];
            if (!optionsEnded && arg == "--") { optionsEnded = true; continue; }
            if (!optionsEnded && arg is "-h" or "--help") return new(null, true, null);
            if (!optionsEnded && arg.StartsWith('-') && arg.Length > 1)
            {
                string name = arg, value = "";
                bool inlineValue = false;
                int eq = arg.IndexOf('=');
                if (eq > 0) { name = arg[..eq]; value = arg[(eq + 1)..]; inlineValue = true; }
                if (!Options.TryGetValue(name, out var spec))
                    return new(null, false, $"unknown option '{name}'");
                if (spec.TakesValue && !inlineValue)
                {
                    if (i + 1 >= args.Count) return new(null, false, $"{name} needs a value");
                    value = args[++i];
                }
                else if (!spec.TakesValue && inlineValue)
                    return new(null, false, $"{name} takes no value");
                string? error = spec.Apply(options, value);
                if (error != null) return new(null, false, error);
                continue;
            }
            if (guest != null)
                return new(null, false, $"more than one guest file ('{guest}', '{arg}')");
            guest = arg;
        }
        if (guest == null)
            return new(null, false, "no guest file given");
        options.GuestPath = guest;
        return new(options, false, null);
    }
}
