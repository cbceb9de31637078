using System.Runtime.Intrinsics.X86;
using Iced.Intel;

namespace ToyVmm.Tests.Cpu.Differential;

public static partial class Catalog
{
    private static readonly string[] NoOverflowConditions = ["b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np"];
    private static readonly string[] CarryOverflowConditions = ["o", "no", "b", "ae"];

    private sealed record Producer(string Name, Instruction[] Sequence, string[] Conditions, Func<MachineState, ulong> Mask,
        Action<CaseContext>? Prepare = null, string? HostMissing = null);

    private static Instruction I(Code c, Register a, Register b) => Instruction.Create(c, a, b);
    private static Instruction I(Code c, Register a) => Instruction.Create(c, a);
    private static Instruction I(Code c, Register a, int imm) => Instruction.Create(c, a, imm);

    /// <summary>
    /// Flags produced by one instruction and consumed by a later one in the same block
    /// (setcc, cmovcc, jcc), sometimes with instructions in between that keep some or
    /// all flags: this is where lazy flags go wrong, and single instructions starting
    /// from a materialised RFLAGS cannot show it. Only conditions whose flags are
    /// defined after the producer are consumed.
    /// </summary>
    private static void AddChains(List<Form> forms)
    {
        Func<MachineState, ulong> all = _ => FlagRules.All, logic = _ => FlagRules.Logic;
        Action<CaseContext> equalSometimes = c => { if (c.Rng.Next(4) == 0) c.State.Gpr[Rcx] = c.State.Gpr[Rax]; };
        Action<CaseContext> clCount = c => { equalSometimes(c); EdgeCountInCl(c); };
        bool hasPopcnt = Popcnt.IsSupported;
        var producers = new Producer[]
        {
            new("add r32", [I(Code.Add_rm32_r32, Register.EAX, Register.ECX)], Conditions, all, equalSometimes),
            new("adc r64", [I(Code.Adc_rm64_r64, Register.RAX, Register.RCX)], Conditions, all, equalSometimes),
            new("sub r8", [I(Code.Sub_rm8_r8, Register.AL, Register.CL)], Conditions, all, equalSometimes),
            new("sbb r16", [I(Code.Sbb_rm16_r16, Register.AX, Register.CX)], Conditions, all, equalSometimes),
            new("cmp r64", [I(Code.Cmp_rm64_r64, Register.RAX, Register.RCX)], Conditions, all, equalSometimes),
            new("cmp r32, imm8", [I(Code.Cmp_rm32_imm8, Register.EAX, -1)], Conditions, all),
            new("cmp r8 (ah), r8", [I(Code.Cmp_rm8_r8, Register.AH, Register.CL)], Conditions, all, equalSometimes),
            new("and r32", [I(Code.And_rm32_r32, Register.EAX, Register.ECX)], Conditions, logic),
            new("or r8", [I(Code.Or_rm8_r8, Register.AL, Register.CL)], Conditions, logic),
            new("xor r64", [I(Code.Xor_rm64_r64, Register.RAX, Register.RCX)], Conditions, logic, equalSometimes),
            new("test r32", [I(Code.Test_rm32_r32, Register.EAX, Register.ECX)], Conditions, logic),
            new("test r64, r64 (same)", [I(Code.Test_rm64_r64, Register.RAX, Register.RAX)], Conditions, logic),
            new("inc r32", [I(Code.Inc_rm32, Register.EAX)], Conditions, all),
            new("dec r64", [I(Code.Dec_rm64, Register.RAX)], Conditions, all),
            new("dec r8", [I(Code.Dec_rm8, Register.AL)], Conditions, all),
            new("neg r32", [I(Code.Neg_rm32, Register.EAX)], Conditions, all),
            new("cmp r32; inc r32 (CF from cmp)", [I(Code.Cmp_rm32_r32, Register.EAX, Register.ECX), I(Code.Inc_rm32, Register.EDX)], Conditions, all, equalSometimes),
            new("sub r64; dec r64 (CF from sub)", [I(Code.Sub_rm64_r64, Register.RAX, Register.RCX), I(Code.Dec_rm64, Register.RSI)], Conditions, all, equalSometimes),
            new("cmp r64; not, lea, mov (flags kept)", [I(Code.Cmp_rm64_r64, Register.RAX, Register.RCX), I(Code.Not_rm64, Register.RDX),
                Instruction.Create(Code.Lea_r64_m, Register.R8, new MemoryOperand(Register.RAX, Register.RCX, 2, 7, 1)), I(Code.Mov_r64_rm64, Register.R9, Register.RAX)],
                Conditions, all, equalSometimes),
            new("cmp r32; shl r32, cl", [I(Code.Cmp_rm32_r32, Register.EAX, Register.ECX), I(Code.Shl_rm32_CL, Register.EDX, Register.CL)],
                NoOverflowConditions, s => FlagRules.AfterShift(FlagRules.Shift.Shl, 32, s.Gpr[Rcx] & 0xFF), clCount),
            new("cmp r64; sar r64, cl", [I(Code.Cmp_rm64_r64, Register.RAX, Register.RCX), I(Code.Sar_rm64_CL, Register.RDX, Register.CL)],
                NoOverflowConditions, s => FlagRules.AfterShift(FlagRules.Shift.Sar, 64, s.Gpr[Rcx] & 0xFF), clCount),
            new("cmp r32; rol r32, cl (SF ZF PF kept)", [I(Code.Cmp_rm32_r32, Register.EAX, Register.ECX), I(Code.Rol_rm32_CL, Register.EDX, Register.CL)],
                NoOverflowConditions, s => FlagRules.AfterShift(FlagRules.Shift.Rol, 32, s.Gpr[Rcx] & 0xFF), clCount),
            new("cmp r8; rcr r8, 1", [I(Code.Cmp_rm8_r8, Register.AL, Register.CL), Instruction.Create(Code.Rcr_rm8_1, Register.DL, 1)],
                Conditions, _ => FlagRules.AfterShift(FlagRules.Shift.Rcr, 8, 1), equalSometimes),
            new("shr r32, 1", [Instruction.Create(Code.Shr_rm32_1, Register.EAX, 1)], Conditions, _ => FlagRules.AfterShift(FlagRules.Shift.Shr, 32, 1)),
            new("sar r64, imm8 5", [I(Code.Sar_rm64_imm8, Register.RAX, 5)], NoOverflowConditions, _ => FlagRules.AfterShift(FlagRules.Shift.Sar, 64, 5)),
            new("shl r16, imm8 0 (flags kept from cmp)", [I(Code.Cmp_rm16_r16, Register.AX, Register.CX), I(Code.Shl_rm16_imm8, Register.DX, 0)], Conditions, all, equalSometimes),
            new("imul r64, r64", [I(Code.Imul_r64_rm64, Register.RAX, Register.RCX)], CarryOverflowConditions, _ => FlagRules.Multiply),
            new("mul r32", [I(Code.Mul_rm32, Register.ECX)], CarryOverflowConditions, _ => FlagRules.Multiply),
            new("bt r32, r32", [I(Code.Bt_rm32_r32, Register.EAX, Register.ECX)], ["b", "ae"], _ => FlagRules.BitTest),
            new("bsf r64, r64", [I(Code.Bsf_r64_rm64, Register.RAX, Register.RCX)], ["e", "ne"], _ => FlagRules.BitScan,
                c => { if (c.Rng.Next(3) == 0) c.State.Gpr[Rcx] = 0; }),
            new("popcnt r32, r32", [I(Code.Popcnt_r32_rm32, Register.EAX, Register.ECX)], Conditions, all,
                c => { if (c.Rng.Next(3) == 0) c.State.Gpr[Rcx] &= 0xFFFF_FFFF_0000_0000; }, hasPopcnt ? null : "the host has no POPCNT"),
            new("sahf", [Instruction.Create(Code.Sahf)], Conditions, all),
            new("cmpxchg r32, r32", [I(Code.Cmpxchg_rm32_r32, Register.ECX, Register.EDX)], Conditions, all, equalSometimes),
            new("xadd r64, r64", [I(Code.Xadd_rm64_r64, Register.RAX, Register.RCX)], Conditions, all),
            new("add r32; adc r32 (carry chain)", [I(Code.Add_rm32_r32, Register.EAX, Register.ECX), I(Code.Adc_rm32_r32, Register.EDX, Register.ESI)], Conditions, all, equalSometimes),
            new("sub r64; sbb r64, r64 (borrow mask)", [I(Code.Sub_rm64_r64, Register.RAX, Register.RCX), I(Code.Sbb_rm64_r64, Register.RDX, Register.RDX)], Conditions, all, equalSometimes),
        };

        foreach (var p in producers)
        {
            var variants = new List<Variant>();
            foreach (var cc in p.Conditions)
            {
                var seq = p.Sequence;
                variants.Add(new Variant(a => { foreach (var i in seq) a.AddInstruction(i); a.AddInstruction(Instruction.Create(C($"Set{cc}_rm8"), Register.R11L)); }));
                variants.Add(new Variant(a => { foreach (var i in seq) a.AddInstruction(i); a.AddInstruction(I(C($"Cmov{cc}_r64_rm64"), Register.R12, Register.R13)); }));
                variants.Add(new Variant(a =>
                {
                    Label taken = a.CreateLabel(), done = a.CreateLabel();
                    foreach (var i in seq) a.AddInstruction(i);
                    a.AddInstruction(Instruction.CreateBranch(C($"J{cc}_rel8_64"), taken.Id));
                    a.AddInstruction(Instruction.Create(Code.Mov_r32_imm32, Register.R15D, 1));
                    a.jmp(done);
                    a.Label(ref taken);
                    a.AddInstruction(Instruction.Create(Code.Mov_r32_imm32, Register.R15D, 2));
                    a.Label(ref done);
                    a.nop();
                }));
            }
            forms.Add(new Form { Family = "chain", Name = $"{p.Name} -> setcc/cmovcc/jcc", Variants = variants, CasesPerVariant = 12,
                DefinedFlags = p.Mask, Prepare = p.Prepare, HostMissing = p.HostMissing });
        }

        // Loops: backward branches, blocks run many times, flags from the loop's own compare.
        forms.Add(new Form { Family = "chain", Name = "loop: add; dec ecx; jnz", CasesPerVariant = 64,
            Prepare = c => c.SetLow(Rcx, 32, (ulong)c.Rng.Next(1, 40)),
            Variants = [new Variant(a =>
            {
                Label top = a.CreateLabel();
                a.Label(ref top);
                a.AddInstruction(I(Code.Add_rm64_r64, Register.RAX, Register.RDX));
                a.AddInstruction(I(Code.Rol_rm64_imm8, Register.RDX, 3));
                a.AddInstruction(I(Code.Dec_rm32, Register.ECX));
                a.AddInstruction(Instruction.CreateBranch(Code.Jne_rel8_64, top.Id));
            })] });
        forms.Add(new Form { Family = "chain", Name = "loop: sum memory; inc; cmp; jb", CasesPerVariant = 64,
            Prepare = c =>
            {
                c.SetLow(Rcx, 32, (ulong)c.Rng.Next(1, 40));
                c.State.Gpr[Rbx] = c.ScratchAddress(c.Rng.Next(0x100, 0x1000));
            },
            Variants = [new Variant(a =>
            {
                Label top = a.CreateLabel();
                a.AddInstruction(I(Code.Xor_rm32_r32, Register.R8D, Register.R8D));
                a.Label(ref top);
                a.AddInstruction(Instruction.Create(Code.Add_r64_rm64, Register.RAX, new MemoryOperand(Register.RBX, Register.R8, 8, 0, 0)));
                a.AddInstruction(Instruction.Create(Code.Adc_r64_rm64, Register.RDX, new MemoryOperand(Register.RBX, Register.R8, 4, 3, 1)));
                a.AddInstruction(I(Code.Inc_rm32, Register.R8D));
                a.AddInstruction(I(Code.Cmp_r32_rm32, Register.R8D, Register.ECX));
                a.AddInstruction(Instruction.CreateBranch(Code.Jb_rel8_64, top.Id));
            })] });
        // A block that branches to its own start runs again without the jump cache (Exec.Branch);
        // long enough to cross the chain budget (256 instructions) several times, with a table
        // lookup and a byte store as in crc and sieve loops, fused and unfused back edges.
        forms.Add(new Form { Family = "chain", Name = "long self-loop: table xor; store; cmp; jne", CasesPerVariant = 24,
            Prepare = c =>
            {
                c.SetLow(Rcx, 32, (ulong)c.Rng.Next(60, 400));
                c.State.Gpr[Rbx] = c.ScratchAddress(c.Rng.Next(0, 0x400) & ~3);
                c.State.Gpr[Rsi] = c.ScratchAddress(c.Rng.Next(0x1000, 0x1C00));
            },
            Variants =
            [
                new Variant(a =>
                {
                    Label top = a.CreateLabel();
                    a.AddInstruction(I(Code.Xor_rm32_r32, Register.R8D, Register.R8D));
                    a.Label(ref top);
                    a.AddInstruction(Instruction.Create(Code.Movzx_r32_rm8, Register.EDX, Register.AL));
                    a.AddInstruction(Instruction.Create(Code.Xor_r32_rm32, Register.EAX, new MemoryOperand(Register.RBX, Register.RDX, 4, 0, 0)));
                    a.AddInstruction(Instruction.Create(Code.Mov_rm8_imm8, new MemoryOperand(Register.RSI, Register.R8, 1, 0, 0), 1));
                    a.AddInstruction(I(Code.Add_rm32_imm8, Register.R8D, 1));
                    a.AddInstruction(I(Code.Cmp_r32_rm32, Register.R8D, Register.ECX));
                    a.AddInstruction(Instruction.CreateBranch(Code.Jne_rel8_64, top.Id));
                }),
                new Variant(a =>
                {
                    Label top = a.CreateLabel();
                    a.Label(ref top);
                    a.AddInstruction(Instruction.Create(Code.Imul_r64_rm64_imm8, Register.RAX, Register.RAX, 3));
                    a.AddInstruction(I(Code.Add_rm64_r64, Register.RDX, Register.RAX));
                    a.AddInstruction(I(Code.Sub_rm32_imm8, Register.ECX, 1));
                    a.AddInstruction(Instruction.CreateBranch(Code.Jne_rel8_64, top.Id));
                }),
            ] });
    }
}
