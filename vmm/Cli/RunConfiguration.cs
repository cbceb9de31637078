using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.Json;

namespace ToyVmm.Cli;

/// <summary>
/// The settings of <c>toyvmm run</c> that do not come from the command line: the JSON
/// config file (<c>--config FILE</c>, else <c>toyvmm.json</c> in the working folder when
/// there is one) and the <c>TOYVMM_</c> environment variables, read through
/// Microsoft.Extensions.Configuration and applied to a <see cref="RunOptionsBuilder"/> in
/// that order (environment over file). Keys are the option names in camelCase
/// (<see cref="RunSetting.ConfigKey"/>); list items are <c>pageout:0</c>, i.e.
/// <c>TOYVMM_PAGEOUT__0</c>.
/// </summary>
public static class RunConfiguration
{
    public const string DefaultFileName = "toyvmm.json";
    public const string EnvironmentPrefix = "TOYVMM_";

    /// <summary>
    /// Reads the config file and the environment onto <paramref name="builder"/>.
    /// Returns the first problem as one line (naming the file or variable, the key and
    /// the value), or null.
    /// </summary>
    /// <param name="configOption">The --config value as typed, or null.</param>
    public static string? Apply(RunOptionsBuilder builder, string? configOption, CliEnvironment env)
    {
        var sources = new List<(IConfigurationSource Source, Func<string, string> Label, bool RefuseUnknownKeys)>();

        string? file = null;
        string? fileLabel = null;
        if (configOption != null)
        {
            file = Path.GetFullPath(configOption, env.WorkingDirectory);
            fileLabel = configOption;
            if (!File.Exists(file))
                return Directory.Exists(file)
                    ? $"--config {configOption}: is a folder, not a file"
                    : $"--config {configOption}: the file does not exist";
        }
        else if (File.Exists(Path.Combine(env.WorkingDirectory, DefaultFileName)))
        {
            file = Path.Combine(env.WorkingDirectory, DefaultFileName);
            fileLabel = DefaultFileName;
        }
        if (file != null)
        {
            // Not a FIFO (opening it would block) nor a device (/dev/zero never ends): a regular file of bounded size.
            string notRegular = $"{fileLabel}: is not a regular file (a pipe, FIFO, socket or device)";
            if (GuestFileCheck.NotRegular(file) is not null) return notRegular;
            byte[] bytes;
            try
            {
                bytes = ReadBounded(file);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                return $"{fileLabel}: cannot read the file: {ex.Message}";
            }
            if (bytes.Length > MaxFileBytes)
                // A device such as /dev/zero seeks like a file but says it holds nothing.
                return new FileInfo(file).Length <= MaxFileBytes ? notRegular
                    : $"{fileLabel}: the file is larger than {MaxFileBytes / 1024} KiB, more than any configuration needs";
            builder.Options.ConfigPath = file;
            string label = fileLabel!;
            // The JSON provider reading a stream: the file is read above, so a missing or
            // unreadable file is reported here in one line rather than by the file provider.
            sources.Add((new JsonStreamConfigurationSource { Stream = new MemoryStream(bytes) }, key => $"{label}: {key}", true));
        }

        // Environment variables with the prefix; other TOYVMM_ names (TOYVMM_NO_FUSE and the
        // like, read elsewhere) are not settings and are left alone.
        IConfigurationSource envSource = env.Variables is null
            ? new Microsoft.Extensions.Configuration.EnvironmentVariables.EnvironmentVariablesConfigurationSource { Prefix = EnvironmentPrefix }
            : new DictionaryEnvironmentSource(env.Variables, EnvironmentPrefix);
        sources.Add((envSource, key => EnvironmentPrefix + key.Replace(ConfigurationPath.KeyDelimiter, "__"), false));

        foreach (var (source, label, refuseUnknownKeys) in sources)
        {
            var configBuilder = new ConfigurationBuilder();
            configBuilder.Add(source);
            IConfigurationRoot root;
            try
            {
                root = configBuilder.Build();
            }
            catch (Exception ex) when (ex is JsonException or FormatException or InvalidDataException)
            {
                return $"{fileLabel}: not valid JSON: {OneLine(ex)}";
            }
            using (root as IDisposable)
            {
                string? error = ApplyLayer(builder, root, label, refuseUnknownKeys);
                if (error != null) return error;
            }
        }
        return null;
    }

    private static string? ApplyLayer(RunOptionsBuilder builder, IConfigurationRoot root, Func<string, string> label, bool refuseUnknownKeys)
    {
        var seen = new HashSet<RunSetting>();
        foreach (var section in root.GetChildren())
        {
            string key = section.Key;
            var setting = RunSettings.FindByConfigKey(key);
            if (setting is null)
            {
                if (!refuseUnknownKeys) continue;
                string? near = TypoSuggester.Suggest(key, RunSettings.All.Select(s => s.ConfigKey));
                return $"{label(key)}: unknown key" + (near is null ? $" (keys are the option names in camelCase, e.g. hostMemory)" : $" (did you mean '{near}'?)");
            }
            if (!seen.Add(setting))
                return $"{label(key)}: {setting.ConfigKey} is set twice (keys ignore case, dashes and underscores)";

            var children = section.GetChildren().ToList();
            if (setting.Kind == SettingKind.List)
            {
                builder.BeginList(setting);
                // A single string is a list of one; an array gives its items in order.
                var items = children.Count == 0
                    ? (section.Value is { Length: > 0 } v ? [(section.Path, v)] : new List<(string, string)>())
                    : children.Select(c => (c.Path, c.Value ?? "")).ToList();
                foreach (var (path, value) in items)
                {
                    string? problem = setting.Apply(builder, value);
                    if (problem != null) return $"{label(path)}: {problem}";
                }
                builder.SetSource(setting, label(key));
                continue;
            }
            if (children.Count > 0)
                return $"{label(key)}: must be a single value, not a list or an object";
            if (section.Value is null) continue;   // JSON null: not set
            string? error = setting.Apply(builder, section.Value);
            if (error != null) return $"{label(key)}: {error}";
            builder.SetSource(setting, label(key));
        }
        return null;
    }

    /// <summary>The largest config file read; a settings file is a few hundred bytes.</summary>
    public const int MaxFileBytes = 1 << 20;

    /// <summary>At most <see cref="MaxFileBytes"/> + 1 bytes of the file, so a larger one is seen without reading it all.</summary>
    private static byte[] ReadBounded(string file)
    {
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0);
        var buffer = new byte[MaxFileBytes + 1];
        int got = 0, n;
        while (got < buffer.Length && (n = stream.Read(buffer, got, buffer.Length - got)) > 0) got += n;
        return buffer[..got];
    }

    private static string OneLine(Exception ex)
    {
        var inner = ex;
        while (inner.InnerException != null) inner = inner.InnerException;
        return inner.Message.ReplaceLineEndings(" ");
    }
}
