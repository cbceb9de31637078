using System.Text;

namespace ToyVmm.Cli;

/// <summary>
/// Keeps a message that quotes what the user typed on one line: control characters
/// in an argument, a config value or a variable (a newline, a carriage return, an
/// escape that would drive the terminal) are written as escapes (<c>\n</c>, <c>\r</c>,
/// <c>\t</c>, <c>\x1b</c>), so every usage error stays one line that shows what was given.
/// </summary>
public static class OneLine
{
    public static string Escape(string message)
    {
        if (!message.Any(char.IsControl)) return message;
        var b = new StringBuilder(message.Length + 8);
        foreach (char c in message)
        {
            switch (c)
            {
                case '\n': b.Append(@"\n"); break;
                case '\r': b.Append(@"\r"); break;
                case '\t': b.Append(@"\t"); break;
                case < '\u0100' when char.IsControl(c): b.Append($@"\x{(int)c:x2}"); break;
                case var _ when char.IsControl(c): b.Append($@"\u{(int)c:x4}"); break;
                default: b.Append(c); break;
            }
        }
        return b.ToString();
    }
}
