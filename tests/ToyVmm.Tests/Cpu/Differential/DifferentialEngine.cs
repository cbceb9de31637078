using System.Text;
using ToyVmm.Cpu;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>What running one form on both sides found.</summary>
public sealed class FormResult(Form form)
{
    public Form Form { get; } = form;
    /// <summary>Cases run on both sides and compared.</summary>
    public int Compared { get; set; }
    public int Mismatches { get; set; }
    /// <summary>Full reports of the first few mismatches.</summary>
    public List<string> Reports { get; } = new();
    /// <summary>Cases dropped because the host itself did not repeat its answer (never expected; reported).</summary>
    public int NativeUnstable { get; set; }
    /// <summary>True when the form stopped early after too many mismatches (more cases would differ too).</summary>
    public bool GaveUp => Mismatches >= DifferentialEngine.MismatchesBeforeGivingUp;
    /// <summary>Why the form was not run on this host, or null.</summary>
    public string? Skipped { get; set; }
}

/// <summary>
/// Runs forms on the host CPU and in the interpreter from identical random
/// inputs and compares registers, defined flags, XMM registers and memory.
/// </summary>
public static class DifferentialEngine
{
    public const int InstructionLimit = 100_000;
    private const int ReportsPerForm = 3;
    public const int MismatchesBeforeGivingUp = 8;

    /// <summary>The translation-tier thresholds every case runs with: -1 the interpreter alone, 0 everything compiled.</summary>
    public static readonly int[] Tiers = [-1, 0];

    /// <summary>Scales every form's case count (the environment variable TOYVMM_DIFF_SCALE, default 1).</summary>
    public static double Scale { get; } =
        double.TryParse(Environment.GetEnvironmentVariable("TOYVMM_DIFF_SCALE"), System.Globalization.CultureInfo.InvariantCulture, out var s) && s > 0 ? s : 1.0;

    public static FormResult Run(Form form, int seed)
    {
        var result = new FormResult(form);
        if (form.HostMissing is not null) { result.Skipped = form.HostMissing; return result; }
        var native = NativeRunner.Instance;
        int cases = Math.Max(4, (int)(form.CasesPerVariant * Scale));
        for (int v = 0; v < form.Variants.Count && result.Mismatches < MismatchesBeforeGivingUp; v++)
        {
            var variant = form.Variants[v];
            var rng = new Random(StableHash(form.Family + "/" + form.Name) ^ (v * 7919) ^ seed);
            var inputs = new MachineState[cases];
            var operandOffsets = new int[cases];
            for (int c = 0; c < cases; c++)
            {
                var ctx = new CaseContext(rng, native.RegionBase, variant);
                ctx.Generate(form.Profile);
                form.Prepare?.Invoke(ctx);
                variant.Prepare?.Invoke(ctx);
                inputs[c] = ctx.State;
                operandOffsets[c] = ctx.EffectiveOffset;
            }

            LoadedSnippet loaded;
            MachineState[] expected;
            lock (native.Gate)
            {
                loaded = native.Load(variant.Emit);
                expected = inputs.Select(native.Run).ToArray();
            }

            // Every case runs on both tiers: the interpreter, and the translation tier with
            // threshold 0 (every block compiled at its first execution).
            foreach (int tier in Tiers)
            {
                using var guest = new GuestMachine(native.RegionBase, loaded.GuestCodePage);
                guest.TierThreshold = tier;
                string who = tier < 0 ? "the interpreter" : "compiled code";
                for (int c = 0; c < cases && result.Mismatches < MismatchesBeforeGivingUp; c++)
                {
                    var input = inputs[c];
                    MachineState? actual = null;
                    string? exitProblem = null;
                    try
                    {
                        var vcpu = guest.CreateVcpu(input, loaded.SnippetStart);
                        var exit = vcpu.Run(InstructionLimit);
                        actual = guest.Capture(vcpu);
                        if (exit.Kind != VcpuExitKind.Halted)
                            exitProblem = $"{who} exited with {exit.Kind}: {exit.Message}";
                        else if (vcpu.Rip != loaded.SnippetEnd && vcpu.Rip != loaded.SnippetEnd + 1)
                            exitProblem = $"{who} halted at rip 0x{vcpu.Rip:x}, not at the hlt at 0x{loaded.SnippetEnd:x}";
                    }
                    catch (Exception ex)
                    {
                        exitProblem = $"{who} threw {ex.GetType().Name}: {ex.Message}";
                    }

                    ulong flagMask = form.DefinedFlags(input);
                    string diff = actual is null ? "" : Differences(expected[c], actual, flagMask);
                    if ((exitProblem is not null || diff.Length > 0) && !NativeReproduces(native, variant, input, expected[c]))
                    {
                        result.NativeUnstable++; // e.g. a signal frame landed in the compared memory: not the interpreter's fault
                        continue;
                    }
                    result.Compared++;
                    if (exitProblem is null && diff.Length == 0) continue;

                    result.Mismatches++;
                    if (result.Reports.Count < ReportsPerForm)
                        result.Reports.Add((tier < 0 ? "" : "[compiled] ") + Report(form, loaded, v, c, input, operandOffsets[c], expected[c], actual, flagMask, exitProblem, diff));
                }
            }
        }
        return result;
    }

    /// <summary>Runs the case natively again: a mismatch only counts when the host gives the same answer twice.</summary>
    private static bool NativeReproduces(NativeRunner native, Variant variant, MachineState input, MachineState expected)
    {
        lock (native.Gate)
        {
            native.Load(variant.Emit);
            return Differences(expected, native.Run(input), FlagRules.All).Length == 0;
        }
    }

    /// <summary>One line per differing register, defined flag, XMM register or memory range.</summary>
    public static string Differences(MachineState native, MachineState guest, ulong flagMask)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < 16; i++)
            if (native.Gpr[i] != guest.Gpr[i])
                sb.AppendLine($"  {MachineState.GprNames[i]}: host 0x{native.Gpr[i]:x16}, interpreter 0x{guest.Gpr[i]:x16}");
        ulong flagDiff = (native.Rflags ^ guest.Rflags) & flagMask;
        if (flagDiff != 0)
            sb.AppendLine($"  flags {MachineState.FlagsText(flagDiff)} differ: host {MachineState.FlagsText(native.Rflags & flagMask)}, interpreter {MachineState.FlagsText(guest.Rflags & flagMask)} (compared {MachineState.FlagsText(flagMask)})");
        if (native.Mxcsr != guest.Mxcsr)
            sb.AppendLine($"  mxcsr: host 0x{native.Mxcsr:x4}, interpreter 0x{guest.Mxcsr:x4}");
        for (int i = 0; i < 16; i++)
            if (native.Xmm[i] != guest.Xmm[i])
                sb.AppendLine($"  xmm{i}: host 0x{native.Xmm[i]:x32}, interpreter 0x{guest.Xmm[i]:x32}");
        if (native.Fcw != guest.Fcw || native.Fsw != guest.Fsw || native.Ftw != guest.Ftw)
            sb.AppendLine($"  x87 fcw/fsw/ftw: host 0x{native.Fcw:x4}/0x{native.Fsw:x4}/0x{native.Ftw:x2}, interpreter 0x{guest.Fcw:x4}/0x{guest.Fsw:x4}/0x{guest.Ftw:x2}");
        for (int i = 0; i < 8; i++)
            if (native.St[i] != guest.St[i])
                sb.AppendLine($"  st{i}: host 0x{native.St[i]:x20}, interpreter 0x{guest.St[i]:x20}");
        MemoryDifferences(sb, "scratch", RegionLayout.ScratchOffset, native.Scratch, guest.Scratch);
        MemoryDifferences(sb, "stack", RegionLayout.StackWindowOffset, native.StackWindow, guest.StackWindow);
        return sb.ToString();
    }

    private static void MemoryDifferences(StringBuilder sb, string what, int regionOffset, byte[] native, byte[] guest)
    {
        int first = -1, last = -1, count = 0;
        for (int i = 0; i < native.Length; i++)
            if (native[i] != guest[i]) { if (first < 0) first = i; last = i; count++; }
        if (count == 0) return;
        int from = first & ~15, to = Math.Min(native.Length, Math.Min(last + 1, from + 32));
        sb.AppendLine($"  memory ({what}): {count} byte(s) differ in region+0x{regionOffset + first:x}..0x{regionOffset + last:x}");
        sb.AppendLine($"    host        +0x{regionOffset + from:x}: {Convert.ToHexString(native, from, to - from)}");
        sb.AppendLine($"    interpreter +0x{regionOffset + from:x}: {Convert.ToHexString(guest, from, to - from)}");
    }

    private static string Report(Form form, LoadedSnippet loaded, int variant, int caseIndex, MachineState input, int operandOffset,
        MachineState native, MachineState? guest, ulong flagMask, string? exitProblem, string diff)
    {
        bool xmm = form.Profile is StateProfile.Sse or StateProfile.Mmx;
        bool x87 = form.Profile == StateProfile.Mmx;
        var sb = new StringBuilder();
        sb.AppendLine($"MISMATCH {form.Family} / {form.Name}, variant {variant}, case {caseIndex}");
        sb.AppendLine($"  instruction(s): {loaded.Text}   (at 0x{loaded.SnippetStart:x}, region 0x{loaded.CodeBase:x})");
        if (exitProblem is not null) sb.AppendLine($"  {exitProblem}");
        if (diff.Length > 0) sb.Append(diff);
        sb.AppendLine("  input:");
        sb.Append(Indent(input.RegistersText(xmm, x87)));
        if (operandOffset >= 0)
        {
            int n = Math.Min(16, RegionLayout.ScratchSize - operandOffset);
            sb.AppendLine($"    memory operand at 0x{MachineState.ScratchAddress(loaded.CodeBase, operandOffset):x} (region+0x{RegionLayout.ScratchOffset + operandOffset:x}): {Convert.ToHexString(input.Scratch, operandOffset, n)}");
        }
        sb.AppendLine("  host output:");
        sb.Append(Indent(native.RegistersText(xmm, x87)));
        if (guest is not null)
        {
            sb.AppendLine("  interpreter output:");
            sb.Append(Indent(guest.RegistersText(xmm, x87)));
        }
        return sb.ToString();

        static string Indent(string s) => string.Concat(s.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => "    " + l + "\n"));
    }

    /// <summary>FNV-1a: string.GetHashCode differs between processes, and seeds must not.</summary>
    public static int StableHash(string s)
    {
        uint h = 2166136261;
        foreach (char ch in s) { h ^= ch; h *= 16777619; }
        return (int)h;
    }
}
