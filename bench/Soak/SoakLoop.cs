using System.Diagnostics;
using System.Text;
using ToyVmm.Loader;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;

namespace ToyVmm.Soak;

/// <summary>One line of guest/guests.txt, as the soak reads it.</summary>
public sealed record SoakGuest(string Name, string Elf, string? Native, int Vcpus, int MemMib, IReadOnlySet<string> Tags)
{
    /// <summary>Reads guest/guests.txt under <paramref name="root"/>; a malformed line is an error, not a skipped guest.</summary>
    public static IReadOnlyList<SoakGuest> LoadManifest(string root)
    {
        var guests = new List<SoakGuest>();
        foreach (var raw in File.ReadLines(Path.Combine(root, "guest", "guests.txt")))
        {
            string line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            var f = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (f.Length != 6 || !int.TryParse(f[3], out int vcpus) || !int.TryParse(f[4], out int mib))
                throw new FormatException($"guest/guests.txt: malformed line: {line}");
            guests.Add(new SoakGuest(f[0], Path.Combine(root, f[1]), f[2] == "-" ? null : Path.Combine(root, f[2]),
                vcpus, mib, f[5].Split(',').ToHashSet()));
        }
        return guests;
    }
}

/// <summary>
/// One soak configuration. The modes that must be safe are listed in one place
/// (<see cref="MmuModes"/>, <see cref="NotifierModes"/>, <see cref="VcpuCounts"/>);
/// a new MMU (the shadow MMU) is one more entry in <see cref="MmuModes"/> and one
/// more case in <see cref="SoakLoop"/>'s memory factory.
/// </summary>
public sealed record SoakConfig(string Mmu, NotifierProtocol Notifier, int Vcpus)
{
    /// <summary>Every secondary MMU the VMM ships.</summary>
    public static readonly IReadOnlyList<string> MmuModes = ["ept", "shadow"];

    /// <summary>Every notifier protocol that must be safe (Broken2008 is the bug kept for teaching).</summary>
    public static readonly IReadOnlyList<NotifierProtocol> NotifierModes = [NotifierProtocol.Sequence];

    public static readonly IReadOnlyList<int> VcpuCounts = [1, 2, 4];

    public static IEnumerable<SoakConfig> All() =>
        from mmu in MmuModes from n in NotifierModes from v in VcpuCounts select new SoakConfig(mmu, n, v);

    public override string ToString() => $"{Mmu}/{Notifier.ToString().ToLowerInvariant()}/{Vcpus}cpu";
}

/// <summary>What a set of soak runs did. Peaks are maxima, the rest sums.</summary>
public sealed class SoakTally
{
    public long Runs, Failures, PagesVerified, PageOuts, Invalidations, Violations, HostErrors;
    public long PeakWorkingSetBytes, PeakGcHeapBytes;

    public void Add(SoakTally o)
    {
        Runs += o.Runs; Failures += o.Failures; PagesVerified += o.PagesVerified; PageOuts += o.PageOuts;
        Invalidations += o.Invalidations; Violations += o.Violations; HostErrors += o.HostErrors;
        PeakWorkingSetBytes = Math.Max(PeakWorkingSetBytes, o.PeakWorkingSetBytes);
        PeakGcHeapBytes = Math.Max(PeakGcHeapBytes, o.PeakGcHeapBytes);
    }

    public override string ToString() =>
        $"runs {Runs,4}  failed {Failures}  pages verified {PagesVerified,9}  page-outs {PageOuts,9}  invalidations {Invalidations,8}  " +
        $"violations {Violations}  host errors {HostErrors}  peak WS {PeakWorkingSetBytes >> 20} MiB  peak GC heap {PeakGcHeapBytes >> 20} MiB";
}

/// <summary>How long and on what the soak runs.</summary>
public sealed record SoakOptions
{
    public required string Root { get; init; }
    /// <summary>Stop starting runs after this long (whole rounds are not required).</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromMinutes(5);
    /// <summary>Stop after this many runs in all, if fewer than the duration allows.</summary>
    public long MaxRuns { get; init; } = long.MaxValue;
    /// <summary>Which guests take part (all by default).</summary>
    public Func<SoakGuest, bool> Guests { get; init; } = _ => true;
    /// <summary>Guests tagged <c>bench</c> run this many instructions, then stop (their output is not compared).</summary>
    public long BenchInstructionBudget { get; init; } = 20_000_000;
    /// <summary>A run that takes longer than this is a hang, and a failure.</summary>
    public TimeSpan HangTimeout { get; init; } = TimeSpan.FromMinutes(2);
    public int Seed { get; init; } = 1;
}

/// <summary>
/// The soak: every shipped guest under every configuration that must be safe
/// (<see cref="SoakConfig.All"/>), round after round until the time is up, with the
/// host pool a quarter of guest RAM, the background reclaimer, random forced
/// page-outs every 2 ms plus cold picks every 5 ms, and the MMU invariant checker on.
/// A run passes when the guest ends normally with status 0, prints what its native
/// build (or guest/expected/NAME.out) prints (at the guest's own vCPU count), the checker saw no violation and the
/// host counted no swap error. Shared by <c>make soak</c> and the test suite.
/// </summary>
public sealed class SoakLoop(SoakOptions options, TextWriter? log = null)
{
    private readonly Dictionary<string, string?> _expected = [];

    public SortedDictionary<string, SoakTally> PerRun { get; } = new(StringComparer.Ordinal);
    public SoakTally Total { get; } = new();
    public List<string> FailureMessages { get; } = [];

    public void Run()
    {
        var guests = SoakGuest.LoadManifest(options.Root).Where(options.Guests).ToList();
        if (guests.Count == 0) throw new InvalidOperationException("no guest selected");
        var configs = SoakConfig.All().ToList();
        var clock = Stopwatch.StartNew();
        int seed = options.Seed;
        while (true)
            foreach (var guest in guests)
                foreach (var config in configs)
                {
                    if (Total.Runs >= options.MaxRuns || clock.Elapsed >= options.Duration) return;
                    var tally = RunOnce(guest, config, seed++);
                    string key = $"{guest.Name,-20} {config}";
                    if (!PerRun.TryGetValue(key, out var t)) PerRun[key] = t = new SoakTally();
                    t.Add(tally);
                    Total.Add(tally);
                }
    }

    /// <summary>One run of <paramref name="guest"/> under <paramref name="config"/>.</summary>
    public SoakTally RunOnce(SoakGuest guest, SoakConfig config, int seed)
    {
        ulong ram = (ulong)guest.MemMib << 20;
        bool budgeted = guest.Tags.Contains("bench");
        var memoryConfig = new GuestMemoryConfig(
            HostMemoryBytes: ram / 4,
            Protocol: config.Notifier,
            Check: true,
            Seed: seed,
            Measure: false,
            PageOut:
            [
                new PeriodicPageOut(TimeSpan.FromMilliseconds(2), null, PageOutPick.Random),
                new PeriodicPageOut(TimeSpan.FromMilliseconds(5), 16, PageOutPick.Cold),
            ]);
        var tally = new SoakTally { Runs = 1 };
        string? failure = null;
        using var console = new MemoryStream();
        try
        {
            var image = ElfLoader.LoadFile(guest.Elf, ram);
            using var backing = CreateMemory(config, ram, memoryConfig);
            VmResult result;
            using (var vm = VirtualMachine.Create(
                new VmConfig(ram, config.Vcpus, budgeted ? options.BenchInstructionBudget : long.MaxValue),
                image, console, _ => backing.Memory))
            using (var hang = new CancellationTokenSource(options.HangTimeout))
            {
                result = vm.Run(hang.Token);
                // While the VM still holds the memory: the figures below are then final.
                backing.StopBackground();
            }

            var stats = backing.Host.Stats;
            tally.PagesVerified = stats.SwapInsFromFile + stats.SwapCacheHits + stats.ZeroFillFaults;
            tally.PageOuts = backing.PressurePages + stats.ReclaimFreed;
            tally.Invalidations = stats.Invalidations;
            tally.Violations = backing.Checker!.ViolationCount;
            tally.HostErrors = stats.SwapWriteErrors + stats.SwapReadErrors + stats.SwapChecksumErrors + stats.OutOfMemory;
            string output = Encoding.Latin1.GetString(console.ToArray());
            failure = Judge(guest, config, budgeted, result, output, tally, backing.Checker.FirstViolation);
            if (backing.Checker.FirstViolation is { } first)
                log?.WriteLine($"{guest.Name} {config} seed {seed}, first violation:\n{ToyVmm.Report.ViolationReport.Format(first)}");
        }
        catch (Exception ex)
        {
            failure = $"{ex.GetType().Name}: {ex.Message}";
        }
        using (var self = Process.GetCurrentProcess())
            tally.PeakWorkingSetBytes = self.PeakWorkingSet64;
        tally.PeakGcHeapBytes = GC.GetGCMemoryInfo().HeapSizeBytes;
        if (failure is not null)
        {
            tally.Failures = 1;
            string message = $"{guest.Name} {config} seed {seed}: {failure}";
            FailureMessages.Add(message);
            log?.WriteLine("FAIL " + message);
        }
        return tally;
    }

    /// <summary>The one place that knows how to build each MMU mode of <see cref="SoakConfig.MmuModes"/>.</summary>
    private static HostBackedMemory CreateMemory(SoakConfig config, ulong ram, GuestMemoryConfig memory) => config.Mmu switch
    {
        "ept" => new HostBackedMemory(ram, config.Vcpus, memory),
        "shadow" => new HostBackedMemory(ram, config.Vcpus, memory with { Mmu = SecondaryMmuKind.Shadow }),
        _ => throw new NotSupportedException($"MMU mode {config.Mmu} is listed but not wired into the soak"),
    };

    private string? Judge(SoakGuest guest, SoakConfig config, bool budgeted, VmResult result, string output, SoakTally tally, MmuViolation? first)
    {
        if (tally.Violations != 0) return $"{tally.Violations} checker violation(s), first: {first?.Rule}";
        if (tally.HostErrors != 0) return $"{tally.HostErrors} host error(s) (swap errors or out of memory)";
        if (budgeted && result.Outcome == VmOutcome.InstructionLimit) return null;
        if (!result.IsNormalExit) return $"{result.Outcome}: {result.Message}";
        if (result.GuestStatus != 0) return $"guest exit status {result.GuestStatus}";
        if (budgeted) return null;
        string? expected = Expected(guest, config);
        if (expected is not null && expected != output)
            return $"console output differs from the expected output ({output.Length} bytes, expected {expected.Length})";
        return null;
    }

    /// <summary>
    /// What the guest must print: guest/expected/NAME.out, else its native build's output
    /// (run once and kept), compared only at the guest's own vCPU count (guests.txt), the one
    /// the native build stands for: guests print their vCPU count and split their work
    /// by it, so at other counts their exit status (their own checks of every page) is the verdict.
    /// </summary>
    private string? Expected(SoakGuest guest, SoakConfig config)
    {
        if (config.Vcpus != guest.Vcpus) return null;
        if (_expected.TryGetValue(guest.Name, out var known)) return known;
        string file = Path.Combine(options.Root, "guest", "expected", guest.Name + ".out");
        string? expected = File.Exists(file) ? Encoding.Latin1.GetString(File.ReadAllBytes(file))
            : guest.Native is not null ? RunNative(guest.Native) : null;
        _expected[guest.Name] = expected;
        return expected;
    }

    private static string RunNative(string path)
    {
        var psi = new ProcessStartInfo(path) { RedirectStandardOutput = true, UseShellExecute = false, StandardOutputEncoding = Encoding.Latin1 };
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {path}");
        string output = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2))) { p.Kill(); throw new InvalidOperationException($"native {path} did not end"); }
        if (p.ExitCode != 0) throw new InvalidOperationException($"native {path} exited {p.ExitCode}");
        return output;
    }

    /// <summary>The per guest/configuration lines and the total, as <c>make soak</c> prints them.</summary>
    public void Print(TextWriter w)
    {
        foreach (var (key, t) in PerRun) w.WriteLine($"{key,-36} {t}");
        w.WriteLine($"{"TOTAL",-36} {Total}");
        foreach (var m in FailureMessages) w.WriteLine("FAIL " + m);
    }

    /// <summary>The repository root: the nearest folder above <paramref name="start"/> holding ToyVmm.sln.</summary>
    public static string FindRoot(string start)
    {
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "ToyVmm.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no ToyVmm.sln above {start}");
    }
}
