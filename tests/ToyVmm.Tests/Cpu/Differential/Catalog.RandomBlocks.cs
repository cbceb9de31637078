using Iced.Intel;

namespace ToyVmm.Tests.Cpu.Differential;

public static partial class Catalog
{
    /// <summary>
    /// Random straight-line blocks (with a forward jcc or two) drawn from forms
    /// whose flag effects are fully defined, so that flags flow through any
    /// number of producers, partial writers and consumers, and partial registers
    /// (AH, 8/16-bit writes, 32-bit zero extension) mix. Only AF can become
    /// undefined (logic ops, shifts by 1): it is tracked while the block is drawn
    /// and masked when it is undefined at the end; lahf is drawn only while AF is defined.
    /// RSP and RBX (the memory operand's base) are never written.
    /// </summary>
    private static void AddRandomBlocks(List<Form> forms)
    {
        var mem = new MemSpec(Register.RBX, Register.None, 1, 0x20);
        for (int f = 0; f < 48; f++)
        {
            var rng = new Random(1000 + f);
            var variants = new List<Variant>();
            bool anyTaint = false;
            for (int v = 0; v < 6; v++)
            {
                var block = DrawBlock(rng, mem, 5 + rng.Next(8), out bool afUndefined);
                anyTaint |= afUndefined;
                variants.Add(new Variant(a => block(a), mem, OperandRef.Memory));
            }
            ulong mask = anyTaint ? FlagRules.All & ~FlagRules.AF : FlagRules.All;
            forms.Add(new Form { Family = "block", Name = $"random block #{f}", Variants = variants, CasesPerVariant = 12, DefinedFlags = _ => mask });
        }
    }

    private static readonly int[] BlockGprs = [Rax, Rcx, Rdx, Rsi, Rdi, Rbp, R8, R9, R10, R11, R12, R13, R14, R15];
    private static readonly string[] BlockAlu = ["Add", "Adc", "Sub", "Sbb", "Cmp", "And", "Or", "Xor", "Test"];

    private static Action<Assembler> DrawBlock(Random rng, MemSpec mem, int length, out bool afUndefined)
    {
        var steps = new List<Action<Assembler>>();
        bool taint = false;
        Register G(int bits) => R(bits, BlockGprs[rng.Next(BlockGprs.Length)]);
        (Register, Register) Pair8()
        {
            // legacy high bytes only with the low four; everything else needs REX
            if (rng.Next(3) == 0)
            {
                Register[] legacy = [Register.AL, Register.CL, Register.DL, Register.AH, Register.CH, Register.DH];
                return (legacy[rng.Next(legacy.Length)], legacy[rng.Next(legacy.Length)]);
            }
            return (G(8), G(8));
        }
        (Register, Register) Pair(int bits) => bits == 8 ? Pair8() : (G(bits), G(bits));

        for (int n = 0; n < length; n++)
        {
            int bits = Sizes[rng.Next(4)];
            Instruction ins;
            switch (rng.Next(16))
            {
                case 0 or 1 or 2:
                {
                    string op = BlockAlu[rng.Next(BlockAlu.Length)];
                    var (d, s) = Pair(bits);
                    ins = Instruction.Create(C($"{op}_rm{bits}_r{bits}"), d, s);
                    taint = IsLogic(op); // add/adc/sub/sbb/cmp define AF again
                    break;
                }
                case 3:
                {
                    string op = BlockAlu[rng.Next(BlockAlu.Length)];
                    int imm = new[] { 0, 1, -1, 0x7F, -0x80, 0x40 }[rng.Next(6)];
                    string immKind = bits == 8 ? "imm8" : op == "Test" ? (bits == 16 ? "imm16" : "imm32") : "imm8";
                    ins = Instruction.Create(C($"{op}_rm{bits}_{immKind}"), Pair(bits).Item1, imm);
                    taint = IsLogic(op);
                    break;
                }
                case 4:
                {
                    string op = BlockAlu[rng.Next(8)]; // no test r, m
                    bool toMem = rng.Next(2) == 0;
                    var r = G(bits == 8 ? 32 : bits);
                    int b = bits == 8 ? 32 : bits;
                    ins = toMem ? Instruction.Create(C($"{op}_rm{b}_r{b}"), mem.Operand(), r) : Instruction.Create(C($"{op}_r{b}_rm{b}"), r, mem.Operand());
                    taint = IsLogic(op);
                    break;
                }
                case 5:
                {
                    string op = new[] { "Inc", "Dec", "Neg", "Not" }[rng.Next(4)];
                    ins = Instruction.Create(C($"{op}_rm{bits}"), Pair(bits).Item1);
                    if (op != "Not") taint = false;
                    break;
                }
                case 6:
                {
                    var (d, s) = Pair(bits);
                    ins = Instruction.Create(C($"Mov_rm{bits}_r{bits}"), d, s);
                    break;
                }
                case 7:
                {
                    var (src, dst) = rng.Next(2) == 0 ? (8, 32) : (16, 64);
                    string op = rng.Next(2) == 0 ? "Movzx" : "Movsx";
                    ins = Instruction.Create(C($"{op}_r{dst}_rm{src}"), G(dst), G(src));
                    break;
                }
                case 8:
                {
                    int disp = rng.Next(-200, 200);
                    ins = Instruction.Create(Code.Lea_r64_m, G(64), new MemoryOperand(G(64), G(64), 1 << rng.Next(4), disp, disp is >= -128 and <= 127 ? 1 : 8));
                }
                    break;
                case 9:
                    ins = Instruction.Create(C($"Set{Conditions[rng.Next(16)]}_rm8"), Pair8().Item1);
                    break;
                case 10:
                {
                    int b = rng.Next(2) == 0 ? 32 : 64;
                    ins = Instruction.Create(C($"Cmov{Conditions[rng.Next(16)]}_r{b}_rm{b}"), G(b), G(b));
                    break;
                }
                case 11:
                {
                    string op = new[] { "Rol", "Ror", "Rcl", "Rcr", "Shl", "Shr", "Sar" }[rng.Next(7)];
                    ins = Instruction.Create(C($"{op}_rm{bits}_1"), Pair(bits).Item1, 1);
                    if (op is "Shl" or "Shr" or "Sar") taint = true; // AF undefined; rotates leave it as it was
                    break;
                }
                case 12:
                    ins = Instruction.Create(new[] { Code.Cbw, Code.Cwde, Code.Cdqe, Code.Cwd, Code.Cdq, Code.Cqo }[rng.Next(6)]);
                    break;
                case 13:
                    if (!taint && rng.Next(2) == 0) ins = Instruction.Create(Code.Lahf);
                    else { ins = Instruction.Create(Code.Sahf); taint = false; }
                    break;
                case 14:
                {
                    var (d, s) = Pair(bits);
                    ins = Instruction.Create(C($"Xchg_rm{bits}_r{bits}"), d, s);
                    break;
                }
                default:
                {
                    // jcc over one flag-neutral instruction
                    string cc = Conditions[rng.Next(16)];
                    var skipped = Instruction.Create(Code.Bswap_r64, G(64));
                    steps.Add(a =>
                    {
                        Label over = a.CreateLabel();
                        a.AddInstruction(Instruction.CreateBranch(C($"J{cc}_rel8_64"), over.Id));
                        a.AddInstruction(skipped);
                        a.Label(ref over);
                    });
                    continue;
                }
            }
            var fixedIns = ins;
            steps.Add(a => a.AddInstruction(fixedIns));
        }
        afUndefined = taint;
        return a => { foreach (var s in steps) s(a); a.nop(); };
    }
}
