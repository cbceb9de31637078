using Iced.Intel;

namespace ToyVmm.Tests.Cpu.Differential;

public static partial class Catalog
{
    internal static readonly string[] Conditions = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"];


    private static void AddMoves(List<Form> forms)
    {
        foreach (int b in Sizes)
        {
            forms.Add(new Form { Family = "move", Name = $"mov r{b}, r{b}", Variants = [.. RegReg(C($"Mov_rm{b}_r{b}"), b), .. RegReg(C($"Mov_r{b}_rm{b}"), b).Take(1)] });
            forms.Add(new Form { Family = "move", Name = $"mov r{b}, m{b}", Variants = RegMem(C($"Mov_r{b}_rm{b}"), b) });
            forms.Add(new Form { Family = "move", Name = $"mov m{b}, r{b}", Variants = MemReg(C($"Mov_rm{b}_r{b}"), b) });
            string imm = b == 64 ? "imm32" : $"imm{b}";
            var ri = FullImms(b).Select((v, i) => Variant.Of(Instruction.Create(C($"Mov_r{b}_{(b == 64 ? "imm64" : imm)}"), Reg(b, Regs(b)[i % 4]), v))).ToList();
            ri.Add(Variant.Of(Instruction.Create(C($"Mov_rm{b}_{imm}"), R(b, R9), -5)));
            if (b == 64) ri.Add(Variant.Of(Instruction.Create(Code.Mov_r64_imm64, Register.R14, 0x8765_4321_0FED_CBA9UL)));
            forms.Add(new Form { Family = "move", Name = $"mov r{b}, imm", Variants = ri, CasesPerVariant = 16 });
            forms.Add(new Form { Family = "move", Name = $"mov m{b}, imm", CasesPerVariant = 16,
                Variants = FullImms(b).Select((v, i) => MemImm(C($"Mov_rm{b}_{imm}"), v, i)).ToList() });
        }

        foreach (var op in new[] { "Movzx", "Movsx" })
            foreach (var (dst, src) in new[] { (16, 8), (32, 8), (64, 8), (16, 16), (32, 16), (64, 16) })
            {
                if (dst == 16 && src == 16) continue;
                string n = op.ToLowerInvariant();
                var code = C($"{op}_r{dst}_rm{src}");
                var rr = RegReg(code, 0, dst, src, sameRegister: true);
                if (src == 8 && dst != 64) rr.Add(Variant.Of(Instruction.Create(code, R(dst, Rcx), Register.AH), rm: new(Rax, true)));
                forms.Add(new Form { Family = "move", Name = $"{n} r{dst}, r{src}", Variants = rr });
                forms.Add(new Form { Family = "move", Name = $"{n} r{dst}, m{src}",
                    Variants = MemPairs(64).Select(p => Variant.Of(Instruction.Create(code, R(dst, p.Data.Gpr), p.Mem.Operand()), p.Mem, OperandRef.Memory)).ToList() });
            }
        forms.Add(new Form { Family = "move", Name = "movsxd r64, r32", Variants = RegReg(Code.Movsxd_r64_rm32, 0, 64, 32, sameRegister: true) });
        forms.Add(new Form { Family = "move", Name = "movsxd r64, m32",
            Variants = MemPairs(64).Select(p => Variant.Of(Instruction.Create(Code.Movsxd_r64_rm32, R(64, p.Data.Gpr), p.Mem.Operand()), p.Mem, OperandRef.Memory)).ToList() });

        foreach (int b in Sizes)
        {
            forms.Add(new Form { Family = "move", Name = $"xchg r{b}, r{b}", Variants = RegReg(C($"Xchg_rm{b}_r{b}"), b) });
            forms.Add(new Form { Family = "move", Name = $"xchg m{b}, r{b}", Variants = MemReg(C($"Xchg_rm{b}_r{b}"), b) });
            if (b > 8)
            {
                string acc = b switch { 16 => "AX", 32 => "EAX", _ => "RAX" };
                forms.Add(new Form { Family = "move", Name = $"xchg r{b}, {acc.ToLowerInvariant()}",
                    Variants = new[] { Rcx, R9, Rsi, R15 }.Select(r => Variant.Of(Instruction.Create(C($"Xchg_r{b}_{acc}"), R(b, r), R(b, Rax)))).ToList() });
            }
        }
        foreach (int b in new[] { 32, 64 })
            forms.Add(new Form { Family = "move", Name = $"bswap r{b}",
                Variants = new[] { Rax, Rcx, R9, R15, Rsp + 1 }.Select(r => Variant.Of(Instruction.Create(C($"Bswap_r{b}"), R(b, r)))).ToList() });

        forms.Add(new Form { Family = "move", Name = "cbw/cwde/cdqe/cwd/cdq/cqo", CasesPerVariant = 64,
            Variants = new[] { Code.Cbw, Code.Cwde, Code.Cdqe, Code.Cwd, Code.Cdq, Code.Cqo }.Select(c => Variant.Of(Instruction.Create(c))).ToList() });
        forms.Add(new Form { Family = "move", Name = "lahf", CasesPerVariant = 128, Variants = [Variant.Of(Instruction.Create(Code.Lahf))] });
        forms.Add(new Form { Family = "move", Name = "sahf", CasesPerVariant = 128, Variants = [Variant.Of(Instruction.Create(Code.Sahf))] });

        AddLea(forms);
    }

    private static void AddLea(List<Form> forms)
    {
        // lea only computes: every register in the address is random data.
        MemoryOperand[] modes =
        [
            new(Register.RAX, Register.RCX, 1, 0, 0),
            new(Register.RBX, Register.RSI, 2, 0x10, 1),
            new(Register.RBP, Register.None, 1, -0x80, 1),
            new(Register.R13, Register.R14, 8, 0x1234_5678, 8),
            new(Register.None, Register.RCX, 4, 0x100, 8),
            new(Register.RSP, Register.None, 1, 8, 1),
            new(Register.R12, Register.RDX, 4, -1, 1),
            new(Register.RDI, Register.RDI, 8, -0x1000, 8),
        ];
        // 32-bit address size (67 prefix): the address wraps at 4 GiB and is zero-extended.
        MemoryOperand[] modes32 =
        [
            new(Register.EAX, Register.ECX, 2, 5, 1),
            new(Register.R9D, Register.None, 1, -0x7FFF_FFFF, 4),
            new(Register.ESP, Register.EBP, 1, 0x10, 1),
        ];
        foreach (int b in new[] { 16, 32, 64 })
        {
            forms.Add(new Form { Family = "move", Name = $"lea r{b}, m",
                Variants = modes.Select((m, i) => Variant.Of(Instruction.Create(C($"Lea_r{b}_m"), R(b, new[] { Rax, R8, Rdx, R15, Rsi }[i % 5]), m))).ToList() });
            forms.Add(new Form { Family = "move", Name = $"lea r{b}, m (32-bit address size)",
                Variants = modes32.Select((m, i) => Variant.Of(Instruction.Create(C($"Lea_r{b}_m"), R(b, new[] { Rdx, R11, Rbx }[i]), m))).ToList() });
        }
        ulong target = NativeRunner.Instance.RegionBase + RegionLayout.ScratchOffset + 0x123;
        forms.Add(new Form { Family = "move", Name = "lea r64, [rip+disp]", CasesPerVariant = 16,
            Variants = [Variant.Of(Instruction.Create(Code.Lea_r64_m, Register.R10, new MemoryOperand(Register.RIP, (long)target)))] });
        forms.Add(new Form { Family = "move", Name = "mov r64, [rip+disp]", CasesPerVariant = 16,
            Variants = [Variant.Of(Instruction.Create(Code.Mov_r64_rm64, Register.R10, new MemoryOperand(Register.RIP, (long)target)))] });
    }

    private static void AddConditional(List<Form> forms)
    {
        foreach (var cc in Conditions)
        {
            string n = cc; // Iced spells them Cmovae_r32_rm32, Setae_rm8, Jae_rel8_64
            forms.Add(new Form { Family = "cond", Name = $"cmov{cc} r, r", CasesPerVariant = 32,
                Variants = [.. RegReg(C($"Cmov{n}_r32_rm32"), 32), .. RegReg(C($"Cmov{n}_r64_rm64"), 64).Take(2), .. RegReg(C($"Cmov{n}_r16_rm16"), 16).Take(2)] });
            forms.Add(new Form { Family = "cond", Name = $"cmov{cc} r, m", CasesPerVariant = 32,
                Variants = [.. RegMem(C($"Cmov{n}_r32_rm32"), 32).Take(2), .. RegMem(C($"Cmov{n}_r64_rm64"), 64).Take(2), .. RegMem(C($"Cmov{n}_r16_rm16"), 16).Take(1)] });
            forms.Add(new Form { Family = "cond", Name = $"set{cc} r8/m8", CasesPerVariant = 32,
                Variants = [.. OneReg(C($"Set{n}_rm8"), 8), .. Mem(C($"Set{n}_rm8")).Take(2)] });
            // jcc taken and not taken, short and near: r8 says which way it went.
            foreach (bool near in new[] { false, true })
            {
                var jcc = C($"J{cc}_{(near ? "rel32" : "rel8")}_64");
                forms.Add(new Form { Family = "cond", Name = $"j{cc} {(near ? "rel32" : "rel8")}", CasesPerVariant = 64,
                    Variants = [new Variant(a =>
                    {
                        Label taken = a.CreateLabel(), done = a.CreateLabel();
                        a.AddInstruction(Instruction.CreateBranch(jcc, taken.Id));
                        a.AddInstruction(Instruction.Create(Code.Mov_r32_imm32, Register.R8D, 1));
                        a.jmp(done);
                        if (near) for (int i = 0; i < 140; i++) a.int3();
                        a.Label(ref taken);
                        a.AddInstruction(Instruction.Create(Code.Mov_r32_imm32, Register.R8D, 2));
                        a.Label(ref done);
                        a.nop();
                    })] });
            }
        }
    }
}
