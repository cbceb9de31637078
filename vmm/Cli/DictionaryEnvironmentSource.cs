using Microsoft.Extensions.Configuration;

namespace ToyVmm.Cli;

/// <summary>
/// Environment variables from a dictionary instead of the process, read as the
/// configuration's environment-variables provider reads the process's: only names with
/// the prefix (any case), the prefix dropped, <c>__</c> for the key delimiter.
/// <see cref="CliEnvironment"/> uses it so tests never touch the process environment.
/// </summary>
public sealed class DictionaryEnvironmentSource(IReadOnlyDictionary<string, string> variables, string prefix) : IConfigurationSource
{
    public IConfigurationProvider Build(IConfigurationBuilder builder) => new Provider(variables, prefix);

    private sealed class Provider(IReadOnlyDictionary<string, string> variables, string prefix) : ConfigurationProvider
    {
        public override void Load()
        {
            var data = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
            foreach (var (name, value) in variables)
            {
                if (!name.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) continue;
                data[name[prefix.Length..].Replace("__", ConfigurationPath.KeyDelimiter)] = value;
            }
            Data = data;
        }
    }
}
