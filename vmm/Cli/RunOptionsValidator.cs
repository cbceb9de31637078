using Microsoft.Extensions.Options;
using ToyVmm.Report;
using ToyVmm.Vm;

namespace ToyVmm.Cli;

/// <summary>One thing wrong with <see cref="RunOptions"/>.</summary>
/// <param name="Setting">The <see cref="RunSetting.Name"/> at fault (<c>--memory</c>, <c>guest</c>), or null when it is a combination.</param>
/// <param name="Problem">What is wrong, without the setting's name (<c>3M is outside 4M..64G</c>).</param>
/// <param name="Sentence">The problem reads on its own (<c>cannot write r.json: ...</c>), so the setting is put before it with a colon.</param>
public sealed record RunOptionsFailure(string? Setting, string Problem, bool Sentence = false)
{
    /// <summary>
    /// The failure in one line: <c>--memory 3M is outside 4M..64G</c> when the value came
    /// from the command line, <c>toyvmm.json: memory: 3M is outside 4M..64G</c> when
    /// <paramref name="sources"/> says it came from a config file or variable.
    /// </summary>
    public string Describe(IReadOnlyDictionary<string, string>? sources = null)
    {
        if (Setting != null && sources != null && sources.TryGetValue(Setting, out string? source))
            return $"{source}: {Problem}";
        if (Setting is null || Setting == RunSettings.GuestName) return Problem;
        return Sentence ? $"{Setting}: {Problem}" : $"{Setting} {Problem}";
    }
}

/// <summary>
/// Checks <see cref="RunOptions"/> before anything runs (ranges, combinations, and that the
/// files it will write can be written); a failure exits with <see cref="ExitCodes.Usage"/>.
/// Creates nothing: the plot folder, when missing, is created after every check passed.
/// The output checks are the writers' own (<see cref="AtomicFile.CheckWritable"/>,
/// <see cref="Plots.CheckWritable"/>), so what passes here is what they can write.
/// </summary>
public sealed class RunOptionsValidator : IValidateOptions<RunOptions>
{
    /// <summary>The most page-out schedules one run takes (each is a thread or a timer).</summary>
    public const int MaxSchedules = 16;

    public ValidateOptionsResult Validate(string? name, RunOptions o)
    {
        var failures = Check(o);
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures.Select(f => f.Describe()));
    }

    public static List<RunOptionsFailure> Check(RunOptions o)
    {
        var failures = new List<RunOptionsFailure>();
        void Fail(string? setting, string problem) => failures.Add(new(setting, problem));

        if (string.IsNullOrWhiteSpace(o.GuestPath))
            Fail(null, "no guest file given");
        else if (!File.Exists(o.GuestPath) && !Directory.Exists(o.GuestPath))
            Fail(RunSettings.GuestName, $"guest file '{o.GuestPath}' does not exist");
        foreach (var more in o.MoreGuests)
            if (!File.Exists(more) && !Directory.Exists(more))
                Fail(RunSettings.GuestName, $"guest file '{more}' does not exist");
        if (o.MoreGuests.Count > 0 && o.FlatMemory)
            Fail("--flat-memory", "several guests share one simulated host; --flat-memory has none");

        bool memoryOk = true;
        if (o.MemoryBytes % (1UL << 20) != 0)
        {
            Fail("--memory", $"{SizeParser.Format(o.MemoryBytes)} is not a multiple of 1M");
            memoryOk = false;
        }
        else if (o.MemoryBytes < RunOptions.MinMemoryBytes || o.MemoryBytes > RunOptions.MaxMemoryBytes)
        {
            Fail("--memory", $"{SizeParser.Format(o.MemoryBytes)} is outside {SizeParser.Format(RunOptions.MinMemoryBytes)}..{SizeParser.Format(RunOptions.MaxMemoryBytes)}");
            memoryOk = false;
        }

        if (o.Vcpus < 1)
            Fail("--vcpus", $"{o.Vcpus} must be at least 1");
        else if (memoryOk && o.Vcpus > BootLayout.MaxVcpus(o.MemoryBytes))
            Fail("--vcpus", $"{o.Vcpus}: the 64 KiB stacks of at most {BootLayout.MaxVcpus(o.MemoryBytes)} vCPUs fit in the reserved top 1 MiB with --memory {SizeParser.Format(o.MemoryBytes)}");

        if (o.HostMemoryBytes != 0 && (o.HostMemoryBytes % 4096 != 0 || o.HostMemoryBytes < (256UL << 10) || o.HostMemoryBytes > RunOptions.MaxMemoryBytes))
            Fail("--host-memory", $"{SizeParser.Format(o.HostMemoryBytes)} must be a multiple of 4K between 256K and {SizeParser.Format(RunOptions.MaxMemoryBytes)}");
        if (o.FlatMemory && (o.HostMemoryBytes != 0 || o.Check || o.PageOut.Count != 0 || o.SwapFile != null || o.Protocol != ToyVmm.Mmu.Notifiers.NotifierProtocol.Sequence || o.Mmu != ToyVmm.Vm.SecondaryMmuKind.Ept))
            Fail(null, "--flat-memory has no host: it cannot go with --host-memory, --check, --pageout, --pageout-interval, --swap-file, --notifier-protocol or --mmu");
        if (o.PageOutIntervalMs < 0 || o.PageOutIntervalMs > 3_600_000)
            Fail("--pageout-interval", $"{o.PageOutIntervalMs} must be between 0 and 3600000 ms");
        CheckSchedules(o, memoryOk, Fail);
        if (o.SwapFile != null)
        {
            string? dir = Path.GetDirectoryName(Path.GetFullPath(o.SwapFile));
            if (dir is null || !Directory.Exists(dir))
                Fail("--swap-file", $"{o.SwapFile}: the directory does not exist");
            // The swap file is always created new: a typo must never truncate the guest or any other file.
            else if (File.Exists(o.SwapFile) || Directory.Exists(o.SwapFile))
                Fail("--swap-file", $"{o.SwapFile} already exists (the swap file is always created new; remove it or name another)");
        }

        if (o.MaxInstructions < 0)
            Fail("--max-instructions", $"{o.MaxInstructions} must not be negative");
        if (o.TraceLimit < RunOptions.MinTraceLimit)
            Fail("--trace-limit", $"{o.TraceLimit} must be at least {RunOptions.MinTraceLimit}");

        if (o.ReportPath != null && AtomicFile.CheckWritable(o.ReportPath) is string reportProblem)
            failures.Add(new("--report", reportProblem, Sentence: true));
        if (o.TracePath != null && AtomicFile.CheckWritable(o.TracePath) is string traceProblem)
            failures.Add(new("--trace", traceProblem, Sentence: true));
        if (o.ReportPath != null && o.TracePath != null &&
            string.Equals(Path.GetFullPath(o.ReportPath), Path.GetFullPath(o.TracePath), StringComparison.Ordinal))
            Fail(null, $"--report and --trace both name {o.ReportPath}");
        if (o.PlotDirectory != null && Plots.CheckWritable(o.PlotDirectory) is string plotProblem)
            failures.Add(new("--plot", plotProblem, Sentence: true));

        return failures;
    }

    private static void CheckSchedules(RunOptions o, bool memoryOk, Action<string?, string> fail)
    {
        if (o.PageOut.Count > MaxSchedules)
            fail("--pageout", $"{o.PageOut.Count} schedules: at most {MaxSchedules}");
        ulong guestPages = o.MemoryBytes / 4096;
        ulong host = RunOutputs.HostMemoryOf(o);
        ulong shrunk = 0;
        foreach (var schedule in o.PageOut)
        {
            if (schedule is PeriodicPageOut { Pages: int pages } && memoryOk && (ulong)pages > guestPages)
                fail("--pageout", $"'{PageOutScheduleParser.Format(schedule)}': pages={pages} is more than the guest's {guestPages} pages");
            if (schedule is HostShrink s) shrunk += s.Bytes;
        }
        // The host needs some frames left to run at all (the minimum --host-memory).
        if (shrunk != 0 && (shrunk > host || host - shrunk < (256UL << 10)))
            fail("--pageout", $"shrink schedules take {SizeParser.Format(shrunk)} of the host's {SizeParser.Format(host)}: at least 256K must remain");
    }
}
