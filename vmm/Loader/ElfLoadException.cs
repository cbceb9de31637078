namespace ToyVmm.Loader;

/// <summary>
/// The guest file breaks a rule of GUEST-ABI.md "Binary format"; it is refused
/// before the guest runs. <see cref="Exception.Message"/> is one line naming
/// the rule and the offending value.
/// </summary>
public sealed class ElfLoadException : Exception
{
    public ElfLoadException(ElfRule rule, string detail)
        : base($"ELF refused ({RuleName(rule)}): {detail}")
    {
        Rule = rule;
    }

    public ElfRule Rule { get; }

    /// <summary>The rule as a short kebab-case name, as it appears in messages.</summary>
    public static string RuleName(ElfRule rule) => rule switch
    {
        ElfRule.Truncated => "truncated",
        ElfRule.Magic => "magic",
        ElfRule.Class => "elf64",
        ElfRule.Encoding => "little-endian",
        ElfRule.Version => "version",
        ElfRule.Machine => "em-x86-64",
        ElfRule.Type => "et-exec",
        ElfRule.HeaderSize => "header-size",
        ElfRule.ProgramHeaderCount => "program-header-count",
        ElfRule.ProgramHeaderTable => "program-header-table",
        ElfRule.Interpreter => "static-no-pt-interp",
        ElfRule.Dynamic => "static-no-pt-dynamic",
        ElfRule.FileSizeAboveMemorySize => "filesz-le-memsz",
        ElfRule.SegmentPastEndOfFile => "segment-inside-file",
        ElfRule.SegmentBelowLoadArea => "segment-above-1mib",
        ElfRule.SegmentInReservedTop => "segment-below-reserved-top",
        ElfRule.SegmentOutsideRam => "segment-inside-ram",
        ElfRule.SegmentOverlap => "segments-disjoint",
        ElfRule.NoLoadableSegment => "has-load-segment",
        ElfRule.EntryOutsideCode => "entry-in-executable-segment",
        _ => rule.ToString(),
    };
}
