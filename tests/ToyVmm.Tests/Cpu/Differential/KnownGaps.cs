namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// Forms whose mismatches are known and accepted for now, keyed by
/// "family: form name", each with the reason. A form listed here still runs and
/// its mismatches are still printed; they just do not fail the family test.
/// An entry is added only when the interpreter states the gap itself (a comment
/// or a deliberate refusal in vmm/Cpu), and is removed as soon as the form
/// matches (the test fails on a stale entry). gcc does not emit these forms for
/// 64-bit freestanding code.
/// </summary>
public static class KnownGaps
{

    public static readonly IReadOnlyDictionary<string, string> Entries = new Dictionary<string, string>
    {
    };
}
