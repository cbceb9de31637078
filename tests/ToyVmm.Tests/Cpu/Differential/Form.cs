using Iced.Intel;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// One instruction form under test (e.g. <c>add r32, r/m32</c> with a memory
/// source): a few concrete snippets (<see cref="Variants"/>: different registers,
/// addressing modes or immediates), the flags that are defined after it, and how
/// to shape random inputs so that they are meaningful and never fault natively.
/// </summary>
public sealed class Form
{
    public required string Family { get; init; }
    public required string Name { get; init; }
    public required IReadOnlyList<Variant> Variants { get; init; }

    /// <summary>Flags compared after the snippet, given its input (undefined ones are masked).</summary>
    public Func<MachineState, ulong> DefinedFlags { get; init; } = _ => FlagRules.All;

    /// <summary>Shapes a random input after the generic generation (valid divisors, shift counts...).</summary>
    public Action<CaseContext>? Prepare { get; init; }

    /// <summary>Kind of random values to favour.</summary>
    public StateProfile Profile { get; init; } = StateProfile.Integer;

    public int CasesPerVariant { get; init; } = 48;

    /// <summary>Null when the host CPU can run the form, else why not (e.g. no POPCNT).</summary>
    public string? HostMissing { get; init; }

    public override string ToString() => $"{Family}: {Name}";
}

public enum StateProfile { Integer, Sse, String, Mmx }

/// <summary>One concrete snippet of a form.</summary>
/// <param name="Emit">Appends the snippet to the assembler.</param>
/// <param name="Mem">The memory operand, if any: the generator points its base at scratch.</param>
/// <param name="Rm">Where the form's r/m operand lives (register or <see cref="Mem"/>), for Prepare.</param>
/// <param name="Prepare">Variant-specific input shaping, run after the form's.</param>
public sealed record Variant(Action<Assembler> Emit, MemSpec? Mem = null, OperandRef? Rm = null, Action<CaseContext>? Prepare = null)
{
    public static Variant Of(Instruction i, MemSpec? mem = null, OperandRef? rm = null, Action<CaseContext>? prepare = null) =>
        new(a => a.AddInstruction(i), mem, rm, prepare);
}

/// <summary>A memory operand [base + index*scale + disp] whose effective address the generator chooses inside scratch.</summary>
public sealed record MemSpec(Register Base, Register Index, int Scale, int Disp, int Align = 1)
{
    public MemoryOperand Operand() =>
        new(Base, Index, Scale, Disp, Disp == 0 && Base is not (Register.RBP or Register.R13 or Register.EBP or Register.R13D) ? 0
            : (Disp is >= -128 and <= 127 ? 1 : Is32 ? 4 : 8));

    /// <summary>32-bit addressing (0x67): the address registers are 32-bit.</summary>
    public bool Is32 => Base.GetSize() == 4 || Index.GetSize() == 4;

    public MemSpec Aligned(int align) => this with { Align = align };
}

/// <summary>A register operand (GPR index 0-15, optionally the legacy high byte) or the memory operand.</summary>
public sealed record OperandRef(int Gpr, bool HighByte = false, bool IsMemory = false)
{
    public static readonly OperandRef Memory = new(-1, false, true);
}
