using Iced.Intel;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// Every instruction form the differential tests compare, grouped by family.
/// Partial by family: Catalog.Alu.cs, Catalog.Shifts.cs, Catalog.Moves.cs,
/// Catalog.Stack.cs, Catalog.Strings.cs, Catalog.AddressSize.cs, Catalog.Sse.cs, Catalog.Mmx.cs, Catalog.Chains.cs, Catalog.RandomBlocks.cs.
/// </summary>
public static partial class Catalog
{
    private static readonly Lazy<IReadOnlyList<Form>> s_all = new(Build);

    public static IReadOnlyList<Form> All => s_all.Value;

    public static IEnumerable<string> Families => All.Select(f => f.Family).Distinct();

    private static IReadOnlyList<Form> Build()
    {
        var forms = new List<Form>();
        AddAlu(forms);
        AddUnary(forms);
        AddMulDiv(forms);
        AddShifts(forms);
        AddBits(forms);
        AddMoves(forms);
        AddConditional(forms);
        AddStack(forms);
        AddAtomic(forms);
        AddStrings(forms);
        AddAddressSize(forms);
        AddHintsAndMisc(forms);
        AddChains(forms);
        AddRandomBlocks(forms);
        AddSseInteger(forms);
        AddSseDouble(forms);
        AddMmx(forms);
        var duplicate = forms.GroupBy(f => f.ToString()).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new InvalidOperationException($"form {duplicate.Key} is declared twice");
        return forms;
    }

    internal static readonly int[] Sizes = [8, 16, 32, 64];

    internal static Code C(string name) =>
        Enum.TryParse<Code>(name, out var c) ? c : throw new ArgumentException($"Iced has no Code.{name}");

    /// <summary>The <paramref name="bits"/>-bit register of GPR <paramref name="gpr"/> (or AH..BH).</summary>
    internal static Register R(int bits, int gpr, bool high = false) => bits switch
    {
        8 when high => gpr < 4 ? Register.AH + gpr : throw new ArgumentOutOfRangeException(nameof(gpr)),
        8 => gpr < 4 ? Register.AL + gpr : gpr < 8 ? Register.SPL + (gpr - 4) : Register.R8L + (gpr - 8),
        16 => Register.AX + gpr,
        32 => Register.EAX + gpr,
        64 => Register.RAX + gpr,
        _ => throw new ArgumentOutOfRangeException(nameof(bits)),
    };

    internal const int Rax = 0, Rcx = 1, Rdx = 2, Rbx = 3, Rsp = 4, Rbp = 5, Rsi = 6, Rdi = 7,
        R8 = 8, R9 = 9, R10 = 10, R11 = 11, R12 = 12, R13 = 13, R14 = 14, R15 = 15;

    /// <summary>Register pairs (dst, src) for reg-reg forms; the last pair of the 8-bit set uses AH.</summary>
    internal static (OperandRef Dst, OperandRef Src)[] RegPairs(int bits) =>
    [
        (new(Rax), new(Rcx)),
        (new(R10), new(Rdi)),
        (new(Rbx), new(R15)),
        bits == 8 ? (new(Rax, true), new(Rdx)) : (new(Rbp), new(Rsi)),
    ];

    /// <summary>Single registers for one-operand forms.</summary>
    internal static OperandRef[] Regs(int bits) =>
        [new(Rcx), new(R11), bits == 8 ? new(Rbx, true) : new(Rsi), new(Rax)];

    /// <summary>Memory operands paired with a data register that is not part of the address.</summary>
    internal static (MemSpec Mem, OperandRef Data)[] MemPairs(int bits) =>
    [
        (new(Register.RBX, Register.None, 1, 0x10), bits == 8 ? new(Rdx, true) : new(Rax)),
        (new(Register.R13, Register.R14, 8, 0x1234), new(R9)),
        (new(Register.RBP, Register.None, 1, -0x30), new(Rsi)),
        (new(Register.R12, Register.None, 1, 0), new(Rdx)),
    ];

    internal static Register Reg(int bits, OperandRef r) => R(bits, r.Gpr, r.HighByte);

    internal static ulong Mask(int bits) => bits == 64 ? ulong.MaxValue : (1UL << bits) - 1;

    internal static long SignExtend(ulong v, int bits) => bits == 64 ? (long)v : (long)(v << (64 - bits)) >> (64 - bits);

    /// <summary>Reg-reg variants of a two-register instruction.</summary>
    internal static List<Variant> RegReg(Code code, int bits, int dstBits = 0, int srcBits = 0, bool sameRegister = false)
    {
        dstBits = dstBits == 0 ? bits : dstBits;
        srcBits = srcBits == 0 ? bits : srcBits;
        var list = new List<Variant>();
        foreach (var (d, s) in RegPairs(Math.Min(dstBits, srcBits)))
            list.Add(Variant.Of(Instruction.Create(code, Reg(dstBits, d), Reg(srcBits, s)), rm: s));
        if (sameRegister)
            list.Add(Variant.Of(Instruction.Create(code, R(dstBits, Rdx), R(srcBits, Rdx)), rm: new(Rdx)));
        return list;
    }

    /// <summary>reg, [mem] variants.</summary>
    internal static List<Variant> RegMem(Code code, int regBits, int align = 1) =>
        MemPairs(regBits).Select(p => Variant.Of(Instruction.Create(code, Reg(regBits, p.Data), p.Mem.Aligned(align).Operand()),
            p.Mem.Aligned(align), OperandRef.Memory)).ToList();

    /// <summary>[mem], reg variants.</summary>
    internal static List<Variant> MemReg(Code code, int regBits, int align = 1, bool locked = false) =>
        MemPairs(regBits).Select(p =>
        {
            var i = Instruction.Create(code, p.Mem.Aligned(align).Operand(), Reg(regBits, p.Data));
            i.HasLockPrefix = locked;
            return Variant.Of(i, p.Mem.Aligned(align), OperandRef.Memory);
        }).ToList();

    /// <summary>[mem] variants of a one-operand instruction.</summary>
    internal static List<Variant> Mem(Code code, int align = 1, bool locked = false) =>
        MemPairs(64).Select(p =>
        {
            var i = Instruction.Create(code, p.Mem.Aligned(align).Operand());
            i.HasLockPrefix = locked;
            return Variant.Of(i, p.Mem.Aligned(align), OperandRef.Memory);
        }).ToList();

    /// <summary>reg variants of a one-operand instruction.</summary>
    internal static List<Variant> OneReg(Code code, int bits) =>
        Regs(bits).Select(r => Variant.Of(Instruction.Create(code, Reg(bits, r)), rm: r)).ToList();
}
