using ToyVmm.Vm;

namespace ToyVmm.Cli;

/// <summary>
/// Collects <see cref="RunOptions"/> layer by layer: defaults, then the config file, then
/// the environment, then the command line; a later layer overwrites what an earlier one
/// set. It remembers which config layer set each setting, so a problem found later by
/// <see cref="RunOptionsValidator"/> can name the file and key rather than an option the
/// user never typed.
/// </summary>
public sealed class RunOptionsBuilder
{
    private readonly List<PageOutSchedule> _pageOut = [];
    private readonly Dictionary<string, string> _sources = new(StringComparer.Ordinal);

    public RunOptions Options { get; } = new();

    /// <summary>Where each setting not from the command line came from: setting name to "FILE: key" or "TOYVMM_KEY".</summary>
    public IReadOnlyDictionary<string, string> Sources => _sources;

    /// <summary>Starts a new list for a repeatable setting: a later layer's list replaces an earlier one's, it does not extend it.</summary>
    public void BeginList(RunSetting setting)
    {
        if (setting.Name == "--pageout") _pageOut.Clear();
    }

    public void AddPageOut(PageOutSchedule schedule) => _pageOut.Add(schedule);

    /// <summary>Records that <paramref name="setting"/> now holds a value from <paramref name="source"/>; null for the command line.</summary>
    public void SetSource(RunSetting setting, string? source)
    {
        if (source is null) _sources.Remove(setting.Name);
        else _sources[setting.Name] = source;
    }

    /// <summary>The options with <see cref="RunOptions.PageOut"/> assembled: the schedules, then the --pageout-interval shorthand.</summary>
    public RunOptions Build()
    {
        var all = new List<PageOutSchedule>(_pageOut);
        if (Options.PageOutIntervalMs > 0)
            all.Add(new PeriodicPageOut(TimeSpan.FromMilliseconds(Options.PageOutIntervalMs), null, PageOutPick.Random));
        Options.PageOut = all;
        return Options;
    }
}
