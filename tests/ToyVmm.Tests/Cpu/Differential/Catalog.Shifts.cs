using System.Runtime.Intrinsics.X86;
using Iced.Intel;

namespace ToyVmm.Tests.Cpu.Differential;

public static partial class Catalog
{
    private static readonly ulong[] CountEdges = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 0xFF, 0x101];
    private static readonly int[] ImmCounts = [0, 1, 2, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 200];

    /// <summary>
    /// CL gets an edge shift count (bits above the count mask are random: the CPU ignores them).
    /// With <paramref name="sixteenBitDouble"/> the masked count stays at most 16 (shld/shrd r16).
    /// </summary>
    private static void EdgeCountInCl(CaseContext c, bool sixteenBitDouble = false)
    {
        ulong count = c.Rng.Next(3) == 0 ? (ulong)c.Rng.Next(256) : CountEdges[c.Rng.Next(CountEdges.Length)];
        if (sixteenBitDouble) count = (uint)c.Rng.Next(17) | ((uint)c.Rng.Next(8) << 5);
        c.SetLow(Rcx, 8, count);
    }

    private static void AddShifts(List<Form> forms)
    {
        var ops = new (string Code, FlagRules.Shift Op)[]
        {
            ("Shl", FlagRules.Shift.Shl), ("Shr", FlagRules.Shift.Shr), ("Sar", FlagRules.Shift.Sar),
            ("Rol", FlagRules.Shift.Rol), ("Ror", FlagRules.Shift.Ror), ("Rcl", FlagRules.Shift.Rcl), ("Rcr", FlagRules.Shift.Rcr),
        };
        foreach (var (name, op) in ops)
            foreach (int b in Sizes)
            {
                string n = name.ToLowerInvariant();
                int bits = b;
                // The shifted register is never rcx, so CL is only the count.
                OperandRef[] regs = [new(Rax), new(R11), b == 8 ? new(Rdx, true) : new(Rsi), new(Rbx)];
                forms.Add(new Form { Family = "shift", Name = $"{n} r{b}, 1", DefinedFlags = _ => FlagRules.AfterShift(op, bits, 1),
                    Variants = regs.Select(r => Variant.Of(Instruction.Create(C($"{name}_rm{b}_1"), Reg(b, r), 1), rm: r)).ToList() });
                forms.Add(new Form { Family = "shift", Name = $"{n} r{b}, cl", Prepare = c => EdgeCountInCl(c),
                    DefinedFlags = s => FlagRules.AfterShift(op, bits, s.Gpr[Rcx] & 0xFF),
                    Variants = regs.Select(r => Variant.Of(Instruction.Create(C($"{name}_rm{b}_CL"), Reg(b, r), Register.CL), rm: r)).ToList() });
                forms.Add(new Form { Family = "shift", Name = $"{n} m{b}, cl", Prepare = c => EdgeCountInCl(c),
                    DefinedFlags = s => FlagRules.AfterShift(op, bits, s.Gpr[Rcx] & 0xFF),
                    Variants = MemPairs(64).Select(p => Variant.Of(Instruction.Create(C($"{name}_rm{b}_CL"), p.Mem.Operand(), Register.CL), p.Mem, OperandRef.Memory)).ToList() });
                foreach (int count in ImmCounts)
                {
                    var r = regs[count % regs.Length];
                    var p = MemPairs(64)[count % 4];
                    forms.Add(new Form { Family = "shift", Name = $"{n} r{b}, imm8 {count}", CasesPerVariant = 32,
                        DefinedFlags = _ => FlagRules.AfterShift(op, bits, (ulong)count),
                        Variants = [Variant.Of(Instruction.Create(C($"{name}_rm{b}_imm8"), Reg(b, r), count), rm: r)] });
                    if (count is 1 or 7 or 8 or 31 or 33)
                        forms.Add(new Form { Family = "shift", Name = $"{n} m{b}, imm8 {count}", CasesPerVariant = 24,
                            DefinedFlags = _ => FlagRules.AfterShift(op, bits, (ulong)count),
                            Variants = [Variant.Of(Instruction.Create(C($"{name}_rm{b}_imm8"), p.Mem.Operand(), count), p.Mem, OperandRef.Memory)] });
                }
                forms.Add(new Form { Family = "shift", Name = $"{n} m{b}, 1", DefinedFlags = _ => FlagRules.AfterShift(op, bits, 1),
                    Variants = MemPairs(64).Select(p => Variant.Of(Instruction.Create(C($"{name}_rm{b}_1"), p.Mem.Operand(), 1), p.Mem, OperandRef.Memory)).ToList() });
            }

        // shld/shrd; a 16-bit count above 16 leaves the result undefined, so it is never generated.
        foreach (var name in new[] { "Shld", "Shrd" })
            foreach (int b in new[] { 16, 32, 64 })
            {
                string n = name.ToLowerInvariant();
                int bits = b;
                bool narrow = b == 16;
                (OperandRef D, OperandRef S)[] pairs = [(new(Rax), new(Rdx)), (new(R10), new(Rdi)), (new(Rbx), new(R15)), (new(Rsi), new(Rsi))];
                forms.Add(new Form { Family = "shift", Name = $"{n} r{b}, r{b}, cl", Prepare = c => EdgeCountInCl(c, narrow),
                    DefinedFlags = s => FlagRules.AfterDoubleShift(bits, s.Gpr[Rcx] & 0xFF),
                    Variants = pairs.Select(p => Variant.Of(Instruction.Create(C($"{name}_rm{b}_r{b}_CL"), Reg(b, p.D), Reg(b, p.S), Register.CL))).ToList() });
                forms.Add(new Form { Family = "shift", Name = $"{n} m{b}, r{b}, cl", Prepare = c => EdgeCountInCl(c, narrow),
                    DefinedFlags = s => FlagRules.AfterDoubleShift(bits, s.Gpr[Rcx] & 0xFF),
                    Variants = MemPairs(b).Select(p => Variant.Of(Instruction.Create(C($"{name}_rm{b}_r{b}_CL"), p.Mem.Operand(), Reg(b, p.Data), Register.CL), p.Mem, OperandRef.Memory)).ToList() });
                var ri = new List<Variant>();
                var mi = new List<Variant>();
                int k = 0;
                foreach (int count in new[] { 0, 1, 2, 8, 15, 16, 31, 32, 63, 64 + 3 }.Where(x => b != 16 || x <= 16))
                {
                    var p = pairs[k % pairs.Length];
                    var m = MemPairs(b)[k % 4];
                    ri.Add(Variant.Of(Instruction.Create(C($"{name}_rm{b}_r{b}_imm8"), Reg(b, p.D), Reg(b, p.S), count)));
                    mi.Add(Variant.Of(Instruction.Create(C($"{name}_rm{b}_r{b}_imm8"), m.Mem.Operand(), Reg(b, m.Data), count), m.Mem, OperandRef.Memory));
                    k++;
                }
                // the imm forms' flag rule needs the count: one form per count keeps it exact
                for (int i = 0; i < ri.Count; i++)
                {
                    int count = new[] { 0, 1, 2, 8, 15, 16, 31, 32, 63, 64 + 3 }.Where(x => b != 16 || x <= 16).ElementAt(i);
                    forms.Add(new Form { Family = "shift", Name = $"{n} r{b}, r{b}, {count}", CasesPerVariant = 32,
                        DefinedFlags = _ => FlagRules.AfterDoubleShift(bits, (ulong)count), Variants = [ri[i]] });
                    if (i % 3 == 1)
                        forms.Add(new Form { Family = "shift", Name = $"{n} m{b}, r{b}, {count}", CasesPerVariant = 32,
                            DefinedFlags = _ => FlagRules.AfterDoubleShift(bits, (ulong)count), Variants = [mi[i]] });
                }
            }
    }

    private static void AddBits(List<Form> forms)
    {
        foreach (var name in new[] { "Bt", "Bts", "Btr", "Btc" })
            foreach (int b in new[] { 16, 32, 64 })
            {
                string n = name.ToLowerInvariant();
                int bits = b;
                forms.Add(new Form { Family = "bits", Name = $"{n} r{b}, r{b}", DefinedFlags = _ => FlagRules.BitTest,
                    Variants = RegReg(C($"{name}_rm{b}_r{b}"), b, sameRegister: true) });
                // Memory with a register bit offset: the offset picks a byte anywhere in scratch, up or down.
                forms.Add(new Form { Family = "bits", Name = $"{n} m{b}, r{b}", DefinedFlags = _ => FlagRules.BitTest,
                    Variants = MemPairs(b).Select(p => Variant.Of(Instruction.Create(C($"{name}_rm{b}_r{b}"), p.Mem.Operand(), Reg(b, p.Data)), p.Mem, OperandRef.Memory,
                        c => BitOffsetInsideScratch(c, p.Data.Gpr, bits))).ToList() });
                var ri = new List<Variant>();
                var mi = new List<Variant>();
                int k = 0;
                foreach (int imm in new[] { 0, 1, 7, 15, 16, 31, 32, 63, 64, 100, 255 })
                {
                    var r = Regs(b)[k % 4];
                    ri.Add(Variant.Of(Instruction.Create(C($"{name}_rm{b}_imm8"), Reg(b, r), imm), rm: r));
                    var m = MemPairs(b)[k % 4].Mem;
                    mi.Add(Variant.Of(Instruction.Create(C($"{name}_rm{b}_imm8"), m.Operand(), imm), m, OperandRef.Memory));
                    k++;
                }
                forms.Add(new Form { Family = "bits", Name = $"{n} r{b}, imm", DefinedFlags = _ => FlagRules.BitTest, Variants = ri, CasesPerVariant = 16 });
                forms.Add(new Form { Family = "bits", Name = $"{n} m{b}, imm", DefinedFlags = _ => FlagRules.BitTest, Variants = mi, CasesPerVariant = 16 });
            }

        var scans = new (string Name, ulong Flags, string? Missing)[]
        {
            ("Bsf", FlagRules.BitScan, null), ("Bsr", FlagRules.BitScan, null),
            ("Tzcnt", FlagRules.CountZeros, Bmi1.IsSupported ? null : "the host has no BMI1 (tzcnt would run as bsf)"),
            ("Lzcnt", FlagRules.CountZeros, Lzcnt.IsSupported ? null : "the host has no LZCNT (lzcnt would run as bsr)"),
            ("Popcnt", FlagRules.All, Popcnt.IsSupported ? null : "the host has no POPCNT"),
        };
        foreach (var (name, flags, missing) in scans)
            foreach (int b in new[] { 16, 32, 64 })
            {
                int bits = b;
                Action<CaseContext> sparse = c =>
                {
                    int roll = c.Rng.Next(6);
                    if (roll == 0) c.WriteRm(bits, 0);
                    else if (roll == 1) c.WriteRm(bits, 1UL << c.Rng.Next(bits));
                };
                string n = name.ToLowerInvariant();
                forms.Add(new Form { Family = "bits", Name = $"{n} r{b}, r{b}", DefinedFlags = _ => flags, HostMissing = missing, Prepare = sparse,
                    Variants = RegReg(C($"{name}_r{b}_rm{b}"), b, sameRegister: true) });
                forms.Add(new Form { Family = "bits", Name = $"{n} r{b}, m{b}", DefinedFlags = _ => flags, HostMissing = missing, Prepare = sparse,
                    Variants = RegMem(C($"{name}_r{b}_rm{b}"), b) });
            }
    }

    /// <summary>Sets a bit-offset register so that bt* with a memory operand touches a byte inside scratch.</summary>
    private static void BitOffsetInsideScratch(CaseContext c, int gpr, int bits)
    {
        int unit = bits / 8;
        int ea = c.EffectiveOffset;
        int lowest = -(ea / unit), highest = (RegionLayout.ScratchSize - unit - ea) / unit;
        if (bits == 16) { lowest = Math.Max(lowest, -2048); highest = Math.Min(highest, 2047); }
        long units = c.Rng.Next(4) == 0 ? c.Rng.Next(-1, 2) : c.Rng.Next(lowest, highest + 1);
        long offset = units * bits + c.Rng.Next(bits);
        c.SetLow(gpr, bits, (ulong)offset);
    }
}
