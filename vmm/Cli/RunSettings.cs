using System.Globalization;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Cli;

/// <summary>How a setting is written on the command line.</summary>
public enum SettingKind
{
    /// <summary>A switch with no value (<c>--check</c>); <c>true</c>/<c>false</c> in the config file and environment.</summary>
    Flag,
    /// <summary>One value (<c>--memory 64M</c> or <c>--memory=64M</c>).</summary>
    Value,
    /// <summary>A value that may be given several times (<c>--pageout A --pageout B</c>); an array in the config file.</summary>
    List,
}

/// <summary>
/// One setting of <c>toyvmm run</c>: its option name, how it is written, its help line
/// and how a text value lands in <see cref="RunOptionsBuilder"/>. The same
/// <see cref="Apply"/> reads the value whether it came from the command line, the config
/// file or the environment, so the three cannot drift apart.
/// </summary>
/// <param name="Name">The long option name (<c>--host-memory</c>), or <c>guest</c> for the positional guest file.</param>
/// <param name="Aliases">Other spellings on the command line (<c>--ram</c>, <c>-v</c>).</param>
/// <param name="HelpName">The value's placeholder in help (<c>SIZE</c>).</param>
/// <param name="Apply">Stores the value; returns the problem with it (without the setting's name), or null.</param>
public sealed record RunSetting(string Name, string[] Aliases, SettingKind Kind, string? HelpName, string Description,
    Func<RunOptionsBuilder, string, string?> Apply)
{
    /// <summary>The key in <c>toyvmm.json</c> and after <c>TOYVMM_</c>: the option name in camelCase (<c>hostMemory</c>).</summary>
    public string ConfigKey { get; } = ToConfigKey(Name);

    /// <summary>Whether this is the positional guest file rather than an option.</summary>
    public bool IsGuest => Name == RunSettings.GuestName;

    public static string ToConfigKey(string optionName)
    {
        var parts = optionName.TrimStart('-').Split('-', StringSplitOptions.RemoveEmptyEntries);
        return string.Concat(parts.Select((p, i) => i == 0 ? p : char.ToUpperInvariant(p[0]) + p[1..]));
    }

    /// <summary>A config key as compared: case, dashes and underscores ignored, so <c>TOYVMM_HOST_MEMORY</c> is <c>hostMemory</c>.</summary>
    public static string Normalize(string key) =>
        string.Concat(key.Where(c => c is not ('-' or '_'))).ToLowerInvariant();
}

/// <summary>Every setting of <c>toyvmm run</c>, in the order help lists them.</summary>
public static class RunSettings
{
    public const string GuestName = "guest";

    public static readonly IReadOnlyList<RunSetting> All =
    [
        new(GuestName, [], SettingKind.Value, "GUEST.elf",
            "the guest: a static ELF64 x86-64 executable written to the ToyVmm guest ABI",
            static (b, v) => Path(v, p => b.Options.GuestPath = p)),
        new("--memory", ["--ram"], SettingKind.Value, "SIZE",
            "guest RAM, e.g. 64M, 1G (default 64M; a multiple of 1M, 4M..64G)",
            static (b, v) => Size(v, n => b.Options.MemoryBytes = n)),
        new("--vcpus", [], SettingKind.Value, "N",
            "vCPUs, each on its own thread (default 1)",
            static (b, v) => Whole(v, int.MaxValue, n => b.Options.Vcpus = (int)n)),
        new("--host-memory", [], SettingKind.Value, "SIZE",
            "the simulated host's frame pool (default: guest RAM + 1/8); smaller than guest RAM makes the host reclaim and swap",
            static (b, v) => Size(v, n => b.Options.HostMemoryBytes = n)),
        new("--pageout", [], SettingKind.List, "SCHEDULE",
            "force host page-outs while the guest runs; repeatable: every=5ms[,pages=N][,pick=random|cold|hot|sweep], at=2s,fraction=0.5[,pick=P] or shrink=16M@1s",
            static (b, v) =>
            {
                if (!PageOutScheduleParser.TryParse(v, out var schedule, out string e)) return $"'{v}': {e}";
                b.AddPageOut(schedule!);
                return null;
            }),
        new("--pageout-interval", [], SettingKind.Value, "MS",
            "shorthand for --pageout every=MSms,pick=random: a random range of 1-64 guest pages every MS milliseconds (0 = off)",
            static (b, v) => Whole(v, int.MaxValue, n => b.Options.PageOutIntervalMs = (int)n, " of milliseconds")),
        new("--check", [], SettingKind.Flag, null,
            "run the MMU invariant checker; a violation stops the VM (exit status 7)",
            static (b, v) => Bool(v, x => b.Options.Check = x)),
        new("--pin-vcpus", [], SettingKind.Flag, null,
            "pin each vCPU thread to one CPU (round-robin over the CPUs the VMM may use), so that TLB shootdowns interrupt only the CPUs of the vCPUs they wait for (Linux; unpinned, with a warning, where refused)",
            static (b, v) => Bool(v, x => b.Options.PinVcpus = x)),
        new("--stats", [], SettingKind.Flag, null,
            "print the end-of-run table (where the time went: faults, invalidations, host) on standard error",
            static (b, v) => Bool(v, x => b.Options.Stats = x)),
        new("--report", [], SettingKind.Value, "PATH",
            "write a JSON report of the run to PATH (its folder must exist)",
            static (b, v) => Path(v, p => b.Options.ReportPath = p)),
        new("--trace", [], SettingKind.Value, "PATH",
            "write a trace-event JSON file of the run to PATH (its folder must exist)",
            static (b, v) => Path(v, p => b.Options.TracePath = p)),
        new("--trace-limit", [], SettingKind.Value, "N",
            $"keep at most N trace events (default {RunOptions.DefaultTraceLimit:N0}, at least {RunOptions.MinTraceLimit})",
            static (b, v) => Whole(v, int.MaxValue, n => b.Options.TraceLimit = (int)n)),
        new("--plot", [], SettingKind.Value, "DIR",
            "write PNG plots of the run into DIR (created if missing)",
            static (b, v) => Path(v, p => b.Options.PlotDirectory = p)),
        new("--seed", [], SettingKind.Value, "N",
            "seed of every random choice of the run (default 1)",
            static (b, v) => Whole(v, ulong.MaxValue, n => b.Options.Seed = n)),
        new("--notifier-protocol", [], SettingKind.Value, "P",
            "sequence (default, KVM's protocol), broken-2008 (the 2008 race, for --check to catch), pin (no notifiers: mapped pages are pinned, reclaim cannot free them) or none (no notifiers, no pins: memory corruption)",
            static (b, v) =>
            {
                if (!NotifierProtocols.TryParse(v, out var protocol))
                    return $"'{v}' is not one of {string.Join(", ", NotifierProtocols.Names)}";
                b.Options.Protocol = protocol;
                return null;
            }),
        new("--mmu", [], SettingKind.Value, "M",
            "the secondary MMU: ept (default: guest-physical to host, the guest walk stays in the vCPU) or shadow (guest-virtual to host through shadow page tables)",
            static (b, v) =>
            {
                switch (v)
                {
                    case "ept": b.Options.Mmu = ToyVmm.Vm.SecondaryMmuKind.Ept; return null;
                    case "shadow": b.Options.Mmu = ToyVmm.Vm.SecondaryMmuKind.Shadow; return null;
                    default: return $"'{v}' is not one of ept, shadow";
                }
            }),
        new("--swap-file", [], SettingKind.Value, "PATH",
            "the swap file, created new (never an existing file), 0600, and deleted at the end (default: a temporary file, unlinked once open)",
            static (b, v) => Path(v, p => b.Options.SwapFile = p)),
        new("--flat-memory", [], SettingKind.Flag, null,
            "one flat block of guest RAM: no host, no secondary MMU (cannot go with the host options)",
            static (b, v) => Bool(v, x => b.Options.FlatMemory = x)),
        new("--max-instructions", [], SettingKind.Value, "N",
            "stop the VM when a vCPU has run about N instructions (exit status 6)",
            static (b, v) => Whole(v, long.MaxValue, n => b.Options.MaxInstructions = (long)n)),
        new("--cpu", [], SettingKind.Value, "MODE",
            "tiered (default): blocks entered often enough are compiled to IL and run by the .NET JIT; or interpreter: every block interpreted",
            static (b, v) =>
            {
                switch (v)
                {
                    case "interpreter": b.Options.Cpu = CpuMode.Interpreter; return null;
                    case "tiered": b.Options.Cpu = CpuMode.Tiered; return null;
                    default: return $"'{v}' is not one of interpreter, tiered";
                }
            }),
        new("--tier-threshold", [], SettingKind.Value, "N",
            $"with --cpu tiered: entries of a block before it is compiled (default {RunOptions.DefaultTierThreshold}; 0 compiles every block at its first execution, on the vCPU thread)",
            static (b, v) => Whole(v, 1_000_000_000, n => b.Options.TierThreshold = (int)n)),
        new("--quiet", [], SettingKind.Flag, null,
            "no progress line on standard error while the guest runs",
            static (b, v) => Bool(v, x => b.Options.Quiet = x)),
        new("--verbose", ["-v"], SettingKind.Flag, null,
            "more VMM detail on standard error",
            static (b, v) => Bool(v, x => b.Options.Verbose = x)),
    ];

    private static readonly Dictionary<string, RunSetting> ByNormalizedKey =
        All.ToDictionary(s => RunSetting.Normalize(s.ConfigKey));

    /// <summary>The setting a config-file or environment key names, or null.</summary>
    public static RunSetting? FindByConfigKey(string key) =>
        ByNormalizedKey.GetValueOrDefault(RunSetting.Normalize(key));

    public static RunSetting Get(string name) => All.First(s => s.Name == name);

    private static string? Size(string v, Action<ulong> set)
    {
        if (!SizeParser.TryParse(v, out ulong n, out string e)) return e;
        set(n);
        return null;
    }

    private static string? Whole(string v, ulong max, Action<ulong> set, string unit = "")
    {
        string t = v.Trim();
        if (!ulong.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out ulong n))
            return t.Length > 0 && t.All(char.IsAsciiDigit) ? $"'{v}' is too large (at most {max})" : $"'{v}' is not a whole number{unit}";
        if (n > max) return $"'{v}' is too large (at most {max})";
        set(n);
        return null;
    }

    private static string? Bool(string v, Action<bool> set)
    {
        switch (v.Trim().ToLowerInvariant())
        {
            case "true" or "1": set(true); return null;
            case "false" or "0": set(false); return null;
            default: return $"'{v}' is not true or false";
        }
    }

    private static string? Path(string v, Action<string> set)
    {
        if (string.IsNullOrWhiteSpace(v)) return "the path is empty";
        set(v);
        return null;
    }
}
