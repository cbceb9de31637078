using Iced.Intel;

namespace ToyVmm.Tests.Cpu.Differential;

public static partial class Catalog
{
    /// <summary>
    /// Sets RSI/RDI inside scratch with room for the count in both directions, a
    /// small RCX (0 included), and sometimes overlapping source and destination
    /// (rep movs must copy element by element, not like memmove).
    /// </summary>
    private static void StringOperands(CaseContext c, int unit)
    {
        var s = c.State;
        int src = c.Rng.Next(2) == 0 ? c.Rng.Next(0x600, 0x900) : c.Rng.Next(0xF00, 0x1100); // the latter crosses a page
        int dst = c.Rng.Next(4) switch
        {
            0 => src + c.Rng.Next(-3 * unit, 3 * unit + 1), // overlapping
            _ => c.Rng.Next(0x1200, 0x1500),
        };
        s.Gpr[Rsi] = c.ScratchAddress(src);
        s.Gpr[Rdi] = c.ScratchAddress(dst);
        s.Gpr[Rcx] = c.Rng.Next(5) == 0 ? 0 : (ulong)c.Rng.Next(1, 40);
        if (c.Rng.Next(2) == 0) s.Gpr[Rax] &= 1; // matches the mostly 0/1 scratch bytes
        if (c.Rng.Next(3) == 0) // make the two strings equal for a while
            Array.Copy(s.Scratch, src, s.Scratch, dst, c.Rng.Next(0, 200));
    }

    private static void AddStrings(List<Form> forms)
    {
        var sizes = new (char Suffix, int Unit)[] { ('b', 1), ('w', 2), ('d', 4), ('q', 8) };
        foreach (var (suffix, unit) in sizes)
        {
            int u = unit;
            Instruction Make(string op, RepPrefixKind rep) => (op, suffix) switch
            {
                ("movs", 'b') => Instruction.CreateMovsb(64, repPrefix: rep),
                ("movs", 'w') => Instruction.CreateMovsw(64, repPrefix: rep),
                ("movs", 'd') => Instruction.CreateMovsd(64, repPrefix: rep),
                ("movs", _) => Instruction.CreateMovsq(64, repPrefix: rep),
                ("stos", 'b') => Instruction.CreateStosb(64, rep),
                ("stos", 'w') => Instruction.CreateStosw(64, rep),
                ("stos", 'd') => Instruction.CreateStosd(64, rep),
                ("stos", _) => Instruction.CreateStosq(64, rep),
                ("lods", 'b') => Instruction.CreateLodsb(64, repPrefix: rep),
                ("lods", 'w') => Instruction.CreateLodsw(64, repPrefix: rep),
                ("lods", 'd') => Instruction.CreateLodsd(64, repPrefix: rep),
                ("lods", _) => Instruction.CreateLodsq(64, repPrefix: rep),
                ("cmps", 'b') => Instruction.CreateCmpsb(64, repPrefix: rep),
                ("cmps", 'w') => Instruction.CreateCmpsw(64, repPrefix: rep),
                ("cmps", 'd') => Instruction.CreateCmpsd(64, repPrefix: rep),
                ("cmps", _) => Instruction.CreateCmpsq(64, repPrefix: rep),
                ("scas", 'b') => Instruction.CreateScasb(64, rep),
                ("scas", 'w') => Instruction.CreateScasw(64, rep),
                ("scas", 'd') => Instruction.CreateScasd(64, rep),
                _ => Instruction.CreateScasq(64, rep),
            };
            foreach (var op in new[] { "movs", "stos", "lods" })
                forms.Add(new Form { Family = "string", Name = $"{op}{suffix} / rep {op}{suffix}", Profile = StateProfile.String,
                    Prepare = c => StringOperands(c, u), CasesPerVariant = 64,
                    Variants = [Variant.Of(Make(op, RepPrefixKind.None)), Variant.Of(Make(op, RepPrefixKind.Repe))] });
            foreach (var op in new[] { "cmps", "scas" })
                forms.Add(new Form { Family = "string", Name = $"{op}{suffix} / repe / repne", Profile = StateProfile.String,
                    Prepare = c => StringOperands(c, u), CasesPerVariant = 64,
                    Variants = [Variant.Of(Make(op, RepPrefixKind.None)), Variant.Of(Make(op, RepPrefixKind.Repe)), Variant.Of(Make(op, RepPrefixKind.Repne))] });
        }
    }
}
