using Iced.Intel;

namespace ToyVmm.Tests.Cpu.Differential;

public static partial class Catalog
{
    private static readonly string[] AluOps = ["Add", "Or", "Adc", "Sbb", "And", "Sub", "Xor", "Cmp", "Test"];

    private static bool IsLogic(string op) => op is "And" or "Or" or "Xor" or "Test";

    /// <summary>Immediates for the sign-extended imm8 and for the full-size immediate encodings.</summary>
    private static readonly int[] Imm8s = [0, 1, -1, 0x7F, -0x80, 0x35];
    private static int[] FullImms(int bits) => bits switch
    {
        8 => [0, 1, -1, 0x7F, -0x80, 0x5A],
        16 => [0x7FFF, -0x8000, 0x1234, -2, 0x80],
        _ => [0x7FFF_FFFF, int.MinValue, 0x1234_5678, -2, 0x80],
    };

    private static void AddAlu(List<Form> forms)
    {
        foreach (var op in AluOps)
        {
            ulong flags = IsLogic(op) ? FlagRules.Logic : FlagRules.All;
            foreach (int b in Sizes)
            {
                string f = "alu";
                var rr = RegReg(C($"{op}_rm{b}_r{b}"), b, sameRegister: true);
                if (op != "Test") rr.AddRange(RegReg(C($"{op}_r{b}_rm{b}"), b).Take(1));
                forms.Add(new Form { Family = f, Name = $"{op.ToLowerInvariant()} r{b}, r{b}", Variants = rr, DefinedFlags = _ => flags });
                if (op != "Test")
                    forms.Add(new Form { Family = f, Name = $"{op.ToLowerInvariant()} r{b}, m{b}", Variants = RegMem(C($"{op}_r{b}_rm{b}"), b), DefinedFlags = _ => flags });
                forms.Add(new Form { Family = f, Name = $"{op.ToLowerInvariant()} m{b}, r{b}", Variants = MemReg(C($"{op}_rm{b}_r{b}"), b), DefinedFlags = _ => flags });

                // Immediates: accumulator short form, full-size and sign-extended imm8.
                var ri = new List<Variant>();
                var mi = new List<Variant>();
                string acc = b switch { 8 => "AL", 16 => "AX", 32 => "EAX", _ => "RAX" };
                string full = b == 64 ? "imm32" : $"imm{b}";
                var regs = Regs(b);
                int k = 0;
                foreach (int imm in FullImms(b))
                {
                    ri.Add(Variant.Of(Instruction.Create(C($"{op}_rm{b}_{full}"), Reg(b, regs[k++ % regs.Length]), imm)));
                    mi.Add(MemImm(C($"{op}_rm{b}_{full}"), imm, k));
                }
                ri.Add(Variant.Of(Instruction.Create(C($"{op}_{acc}_{full}"), R(b, Rax), FullImms(b)[2])));
                ri.Add(Variant.Of(Instruction.Create(C($"{op}_{acc}_{full}"), R(b, Rax), FullImms(b)[1])));
                if (b != 8 && op != "Test")
                    foreach (int imm in Imm8s)
                    {
                        ri.Add(Variant.Of(Instruction.Create(C($"{op}_rm{b}_imm8"), Reg(b, regs[k++ % regs.Length]), imm)));
                        mi.Add(MemImm(C($"{op}_rm{b}_imm8"), imm, k));
                    }
                forms.Add(new Form { Family = f, Name = $"{op.ToLowerInvariant()} r{b}, imm", Variants = ri, DefinedFlags = _ => flags, CasesPerVariant = 24 });
                forms.Add(new Form { Family = f, Name = $"{op.ToLowerInvariant()} m{b}, imm", Variants = mi, DefinedFlags = _ => flags, CasesPerVariant = 16 });
            }
        }
    }

    private static Variant MemImm(Code code, int imm, int k, bool locked = false)
    {
        var mem = MemPairs(64)[k % 4].Mem;
        var i = Instruction.Create(code, mem.Operand(), imm);
        i.HasLockPrefix = locked;
        return Variant.Of(i, mem, OperandRef.Memory);
    }

    private static void AddUnary(List<Form> forms)
    {
        foreach (var op in new[] { "Inc", "Dec", "Neg", "Not" })
            foreach (int b in Sizes)
            {
                forms.Add(new Form { Family = "unary", Name = $"{op.ToLowerInvariant()} r{b}", Variants = OneReg(C($"{op}_rm{b}"), b) });
                forms.Add(new Form { Family = "unary", Name = $"{op.ToLowerInvariant()} m{b}", Variants = Mem(C($"{op}_rm{b}")) });
            }
    }

    private static void AddMulDiv(List<Form> forms)
    {
        foreach (int b in Sizes)
        {
            OperandRef[] srcs = [new(Rcx), new(R11), b == 8 ? new(Rbx, true) : new(Rbx), new(Rax)];
            foreach (var op in new[] { "Mul", "Imul" })
            {
                forms.Add(new Form { Family = "muldiv", Name = $"{op.ToLowerInvariant()} r{b}", DefinedFlags = _ => FlagRules.Multiply,
                    Variants = srcs.Select(r => Variant.Of(Instruction.Create(C($"{op}_rm{b}"), Reg(b, r)), rm: r)).ToList() });
                forms.Add(new Form { Family = "muldiv", Name = $"{op.ToLowerInvariant()} m{b}", DefinedFlags = _ => FlagRules.Multiply, Variants = Mem(C($"{op}_rm{b}")) });
            }

            // div/idiv: divisor never rax/rdx (their halves are the dividend); inputs never fault.
            OperandRef[] divisors = [new(Rcx), new(R11), b == 8 ? new(Rbx, true) : new(Rbx), new(R15)];
            foreach (var op in new[] { "Div", "Idiv" })
            {
                bool signed = op == "Idiv";
                int bits = b;
                forms.Add(new Form { Family = "muldiv", Name = $"{op.ToLowerInvariant()} r{b}", DefinedFlags = _ => FlagRules.Divide,
                    Prepare = c => MakeDivisionValid(c, bits, signed),
                    Variants = divisors.Select(r => Variant.Of(Instruction.Create(C($"{op}_rm{b}"), Reg(b, r)), rm: r)).ToList() });
                forms.Add(new Form { Family = "muldiv", Name = $"{op.ToLowerInvariant()} m{b}", DefinedFlags = _ => FlagRules.Divide,
                    Prepare = c => MakeDivisionValid(c, bits, signed), Variants = Mem(C($"{op}_rm{b}")) });
            }
        }

        foreach (int b in new[] { 16, 32, 64 })
        {
            forms.Add(new Form { Family = "muldiv", Name = $"imul r{b}, r{b}", DefinedFlags = _ => FlagRules.Multiply, Variants = RegReg(C($"Imul_r{b}_rm{b}"), b, sameRegister: true) });
            forms.Add(new Form { Family = "muldiv", Name = $"imul r{b}, m{b}", DefinedFlags = _ => FlagRules.Multiply, Variants = RegMem(C($"Imul_r{b}_rm{b}"), b) });
            var r3 = new List<Variant>();
            var m3 = new List<Variant>();
            string full = b == 16 ? "imm16" : "imm32";
            int k = 0;
            foreach (var (imm, code) in Imm8s.Select(i => (i, C($"Imul_r{b}_rm{b}_imm8"))).Concat(FullImms(b).Select(i => (i, C($"Imul_r{b}_rm{b}_{full}")))))
            {
                var (d, s) = RegPairs(b)[k % 4];
                r3.Add(Variant.Of(Instruction.Create(code, Reg(b, d), Reg(b, s), imm), rm: s));
                var (mem, data) = MemPairs(b)[k % 4];
                m3.Add(Variant.Of(Instruction.Create(code, Reg(b, data), mem.Operand(), imm), mem, OperandRef.Memory));
                k++;
            }
            forms.Add(new Form { Family = "muldiv", Name = $"imul r{b}, r{b}, imm", DefinedFlags = _ => FlagRules.Multiply, Variants = r3, CasesPerVariant = 24 });
            forms.Add(new Form { Family = "muldiv", Name = $"imul r{b}, m{b}, imm", DefinedFlags = _ => FlagRules.Multiply, Variants = m3, CasesPerVariant = 24 });
        }
    }

    /// <summary>
    /// Makes a div/idiv input that cannot raise #DE: a non-zero divisor and a
    /// dividend whose quotient fits (unsigned: high half below the divisor; signed:
    /// checked with 128-bit arithmetic, else the dividend is narrowed).
    /// </summary>
    private static void MakeDivisionValid(CaseContext c, int bits, bool signed)
    {
        ulong m = Mask(bits);
        ulong d = c.ReadRm(bits) & m;
        if (d == 0 || c.Rng.Next(8) == 0) d = c.Rng.Next(3) switch { 0 => 1, 1 => m, _ => (c.Value() & m) | 1 };
        c.WriteRm(bits, d);
        var s = c.State;
        ulong lo = bits == 8 ? s.Gpr[Rax] & 0xFF : s.Gpr[Rax] & m;
        ulong hi = bits == 8 ? (s.Gpr[Rax] >> 8) & 0xFF : s.Gpr[Rdx] & m;
        if (!signed)
        {
            hi %= d;
        }
        else
        {
            Int128 divisor = SignExtend(d, bits);
            if (!SignedQuotientFits(hi, lo, divisor, bits))
            {
                hi = SignExtend(lo, bits) < 0 ? m : 0;
                if (!SignedQuotientFits(hi, lo, divisor, bits)) { lo = 1; hi = 0; } // MIN / -1
            }
        }
        if (bits == 8) c.SetLow(Rax, 16, (hi << 8) | lo);
        else { c.SetLow(Rax, bits, lo); c.SetLow(Rdx, bits, hi); }
    }

    private static bool SignedQuotientFits(ulong hi, ulong lo, Int128 divisor, int bits)
    {
        Int128 dividend = ((Int128)SignExtend(hi, bits) << bits) | (Int128)(UInt128)lo;
        Int128 q = dividend / divisor;
        Int128 max = (Int128.One << (bits - 1)) - 1, min = -(Int128.One << (bits - 1));
        return q >= min && q <= max;
    }
}
