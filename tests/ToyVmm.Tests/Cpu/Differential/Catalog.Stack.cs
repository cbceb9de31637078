using System.Runtime.Intrinsics.X86;
using Iced.Intel;

namespace ToyVmm.Tests.Cpu.Differential;

public static partial class Catalog
{
    private static Variant Seq(params Instruction[] instructions) =>
        new(a => { foreach (var i in instructions) a.AddInstruction(i); });

    private static void AddStack(List<Form> forms)
    {
        forms.Add(new Form { Family = "stack", Name = "push r64",
            Variants = new[] { Rax, R12, Rbp, Rsp, R15 }.Select(r => Variant.Of(Instruction.Create(Code.Push_r64, R(64, r)))).ToList() });
        forms.Add(new Form { Family = "stack", Name = "pop r64",
            Variants = new[] { Rcx, R13, Rbx, Rsp, R8 }.Select(r => Variant.Of(Instruction.Create(Code.Pop_r64, R(64, r)))).ToList() });
        forms.Add(new Form { Family = "stack", Name = "push r16",
            Variants = [Variant.Of(Instruction.Create(Code.Push_r16, Register.DX)),
                Seq(Instruction.Create(Code.Push_r16, Register.AX), Instruction.Create(Code.Pop_r64, Register.RCX))] });
        forms.Add(new Form { Family = "stack", Name = "pop r16",
            Variants = [Variant.Of(Instruction.Create(Code.Pop_r16, Register.R9W)), Variant.Of(Instruction.Create(Code.Pop_r16, Register.BX))] });
        forms.Add(new Form { Family = "stack", Name = "push imm", CasesPerVariant = 16,
            Variants = [Variant.Of(Instruction.Create(Code.Pushq_imm8, -1)), Variant.Of(Instruction.Create(Code.Pushq_imm8, 0x7F)),
                Variant.Of(Instruction.Create(Code.Pushq_imm32, int.MinValue)), Variant.Of(Instruction.Create(Code.Pushq_imm32, 0x1234_5678))] });
        forms.Add(new Form { Family = "stack", Name = "push imm16", CasesPerVariant = 16,
            Variants = [Variant.Of(Instruction.Create(Code.Push_imm16, 0x8001)), Variant.Of(Instruction.Create(Code.Push_imm16, 0x7F))] });
        forms.Add(new Form { Family = "stack", Name = "pushw imm8", CasesPerVariant = 16,
            Variants = [Variant.Of(Instruction.Create(Code.Pushw_imm8, -2)), Variant.Of(Instruction.Create(Code.Pushw_imm8, 0x7F))] });
        forms.Add(new Form { Family = "stack", Name = "push m16 / pop m16",
            Variants = [.. Mem(Code.Push_rm16).Take(2), .. Mem(Code.Pop_rm16).Take(2),
                Variant.Of(Instruction.Create(Code.Push_rm16, Register.R10W)), Variant.Of(Instruction.Create(Code.Pop_rm16, Register.SI)),
                Variant.Of(Instruction.Create(Code.Pop_r16, Register.SP)), Variant.Of(Instruction.Create(Code.Push_r16, Register.SP)),
                Variant.Of(Instruction.Create(Code.Pop_rm16, new MemoryOperand(Register.RSP, 2, 1)))] });
        forms.Add(new Form { Family = "stack", Name = "pushfw / popfw",
            Prepare = c =>
            {
                // popfw natively at CPL 3: TF would trap; IF and IOPL are ignored there, so only the
                // arithmetic flags and DF are given (bit 1 is always 1, bits 3, 5 and 15 always 0).
                ulong w = c.Value() & MachineState.InputFlags;
                c.State.StackWindow[RegionLayout.InitialRspOffset - RegionLayout.StackWindowOffset] = (byte)w;
                c.State.StackWindow[RegionLayout.InitialRspOffset - RegionLayout.StackWindowOffset + 1] = (byte)(w >> 8);
            },
            Variants = [Variant.Of(Instruction.Create(Code.Pushfw)), Variant.Of(Instruction.Create(Code.Popfw)),
                Seq(Instruction.Create(Code.Pushfw), Instruction.Create(Code.Pop_r16, Register.CX))] });
        forms.Add(new Form { Family = "stack", Name = "leavew",
            Prepare = c => c.State.Gpr[Rbp] = c.InitialRsp + 2 * (ulong)c.Rng.Next(0, 16),
            Variants = [Variant.Of(Instruction.Create(Code.Leavew))] });
        forms.Add(new Form { Family = "stack", Name = "enterw / enterq",
            Prepare = c => c.State.Gpr[Rbp] = c.InitialRsp + 2 * (ulong)c.Rng.Next(0, 32),
            Variants = [.. new (int Size, int Level)[] { (0, 0), (0x20, 0), (8, 1), (0, 2), (0x10, 5) }.Select(e =>
                Variant.Of(Instruction.Create(Code.Enterw_imm16_imm8, e.Size, e.Level))),
                Variant.Of(Instruction.Create(Code.Enterq_imm16_imm8, 0x18, 3)),
                Seq(Instruction.Create(Code.Enterw_imm16_imm8, 4, 0), Instruction.Create(Code.Leavew))] });
        forms.Add(new Form { Family = "stack", Name = "push m64 / pop m64",
            Variants = [.. Mem(Code.Push_rm64).Take(2), .. Mem(Code.Pop_rm64).Take(2)] });
        forms.Add(new Form { Family = "stack", Name = "push, push, pop, pop",
            Variants = [Seq(Instruction.Create(Code.Push_r64, Register.RAX), Instruction.Create(Code.Push_r64, Register.R11),
                Instruction.Create(Code.Pop_r64, Register.RDX), Instruction.Create(Code.Pop_r64, Register.R14))] });
        // RSP as a base register: push computes the address before the decrement, pop after the increment.
        MemoryOperand Sp(int disp) => new(Register.RSP, disp, disp == 0 ? 0 : 1);
        forms.Add(new Form { Family = "stack", Name = "rsp-based operands",
            Variants =
            [
                Variant.Of(Instruction.Create(Code.Mov_r64_rm64, Register.RAX, Sp(8))),
                Variant.Of(Instruction.Create(Code.Mov_rm64_r64, Sp(-8), Register.RCX)),
                Variant.Of(Instruction.Create(Code.Add_rm32_r32, Sp(16), Register.EDX)),
                Variant.Of(Instruction.Create(Code.Xchg_rm64_r64, Sp(0), Register.R9)),
                Variant.Of(Instruction.Create(Code.Push_rm64, Sp(8))),
                Variant.Of(Instruction.Create(Code.Push_rm64, Sp(0))),
                Variant.Of(Instruction.Create(Code.Pop_rm64, Sp(8))),
                Variant.Of(Instruction.Create(Code.Pop_rm64, Sp(0))),
                Variant.Of(Instruction.Create(Code.Pop_rm64, Sp(-8))),
                Seq(Instruction.Create(Code.Push_r64, Register.RSP), Instruction.Create(Code.Pop_r64, Register.R10)),
            ] });
        forms.Add(new Form { Family = "stack", Name = "leave",
            Prepare = c => c.State.Gpr[Rbp] = c.InitialRsp + 8 * (ulong)c.Rng.Next(0, 16),
            Variants = [Variant.Of(Instruction.Create(Code.Leaveq))] });
        forms.Add(new Form { Family = "stack", Name = "call rel32 / ret", CasesPerVariant = 32,
            Variants = [new Variant(a =>
            {
                Label callee = a.CreateLabel(), done = a.CreateLabel();
                a.call(callee);
                a.AddInstruction(Instruction.Create(Code.Mov_r32_imm32, Register.R9D, 7));
                a.jmp(done);
                a.Label(ref callee);
                a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.R10, new MemoryOperand(Register.RSP)));
                a.AddInstruction(Instruction.Create(Code.Retnq));
                a.Label(ref done);
                a.nop();
            }),
            new Variant(a =>
            {
                Label callee = a.CreateLabel(), done = a.CreateLabel();
                a.call(callee);
                a.jmp(done);
                a.Label(ref callee);
                a.AddInstruction(Instruction.Create(Code.Retnq_imm16, 8)); // ret 8 drops one more slot
                a.Label(ref done);
                a.nop();
            })] });
        // The stack across a page boundary: RSP moved 0x7FC down from +0x7800 puts every 8-byte
        // slot of push, pop, call, ret and leave across +0x7000 (the TLB fast path's crossing
        // check sends them to the slow path); RSP is restored before the snippet ends.
        forms.Add(new Form { Family = "stack", Name = "push/pop/call/ret/leave across a page", CasesPerVariant = 16,
            Variants = [new Variant(a =>
            {
                Label callee = a.CreateLabel(), done = a.CreateLabel();
                a.AddInstruction(Instruction.Create(Code.Sub_rm64_imm32, Register.RSP, 0x7FC));   // +0x7004
                a.AddInstruction(Instruction.Create(Code.Push_r64, Register.RAX));                  // writes +0x6FFC..+0x7003
                a.AddInstruction(Instruction.Create(Code.Pushq_imm32, 0x1234_5678));
                a.AddInstruction(Instruction.Create(Code.Pop_r64, Register.RCX));
                a.AddInstruction(Instruction.Create(Code.Pop_r64, Register.RDX));                   // reads across
                a.call(callee);                                                                     // return address across
                a.jmp(done);
                a.Label(ref callee);
                a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.R10, new MemoryOperand(Register.RSP)));
                a.AddInstruction(Instruction.Create(Code.Retnq));
                a.Label(ref done);
                a.AddInstruction(Instruction.Create(Code.Push_r64, Register.RAX));
                a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.RBP, Register.RSP));
                a.AddInstruction(Instruction.Create(Code.Leaveq));                                  // pops RBP across
                a.AddInstruction(Instruction.Create(Code.Add_rm64_imm32, Register.RSP, 0x7FC));
            })] });
        forms.Add(new Form { Family = "stack", Name = "jmp r64 / call r64 / jmp m64", CasesPerVariant = 32,
            Variants = [new Variant(a =>
            {
                Label target = a.CreateLabel(), done = a.CreateLabel();
                a.lea(AssemblerRegisters.rax, AssemblerRegisters.__[target]);
                a.jmp(AssemblerRegisters.rax);
                a.AddInstruction(Instruction.Create(Code.Mov_r32_imm32, Register.R9D, 7));
                a.Label(ref target);
                a.lea(AssemblerRegisters.r11, AssemblerRegisters.__[done]);
                a.call(AssemblerRegisters.r11);
                a.Label(ref done);
                a.pop(AssemblerRegisters.rcx);
            })] });
    }

    private static void AddAtomic(List<Form> forms)
    {
        foreach (int b in Sizes)
        {
            int bits = b;
            // Half the cases have the accumulator equal to the destination, so both outcomes occur.
            Action<CaseContext> equal = c => { if (c.Rng.Next(2) == 0) c.SetLow(Rax, bits, c.ReadRm(bits)); };
            var rr = new List<Variant>();
            foreach (var (d, s) in new (OperandRef, OperandRef)[] { (new(Rcx), new(Rdx)), (new(R10), new(R11)), (new(Rbx), new(Rax)), (new(Rax), new(Rsi)) })
                rr.Add(Variant.Of(Instruction.Create(C($"Cmpxchg_rm{b}_r{b}"), Reg(b, d), Reg(b, s)), rm: d));
            forms.Add(new Form { Family = "atomic", Name = $"cmpxchg r{b}, r{b}", Prepare = equal, Variants = rr });
            forms.Add(new Form { Family = "atomic", Name = $"cmpxchg m{b}, r{b}", Prepare = equal,
                Variants = [.. MemReg(C($"Cmpxchg_rm{b}_r{b}"), b).Skip(1).Take(2), .. MemReg(C($"Cmpxchg_rm{b}_r{b}"), b, locked: true).Skip(1)] });
            forms.Add(new Form { Family = "atomic", Name = $"xadd r{b}, r{b}", Variants = RegReg(C($"Xadd_rm{b}_r{b}"), b, sameRegister: true) });
            forms.Add(new Form { Family = "atomic", Name = $"xadd m{b}, r{b}",
                Variants = [.. MemReg(C($"Xadd_rm{b}_r{b}"), b).Take(2), .. MemReg(C($"Xadd_rm{b}_r{b}"), b, locked: true).Take(2)] });
            var locked = new List<Variant>();
            int k = 0;
            foreach (var op in new[] { "Add", "Sub", "And", "Or", "Xor", "Adc", "Sbb" })
            {
                locked.Add(MemReg(C($"{op}_rm{b}_r{b}"), b, locked: true)[k % 4]);
                locked.Add(MemImm(C($"{op}_rm{b}_imm{(b == 64 ? 32 : b)}"), -3, k, locked: true));
                k++;
            }
            forms.Add(new Form { Family = "atomic", Name = $"lock alu m{b}", Variants = locked, CasesPerVariant = 24 });
            var lockedUnary = new[] { "Inc", "Dec", "Neg", "Not" }.Select((op, i) => Mem(C($"{op}_rm{b}"), locked: true)[i]).ToList();
            forms.Add(new Form { Family = "atomic", Name = $"lock inc/dec/neg/not m{b}", Variants = lockedUnary });
            if (b > 8)
            {
                var lockedBits = new[] { "Bts", "Btr", "Btc" }.Select((op, i) =>
                {
                    var mem = MemPairs(b)[i].Mem;
                    var ins = Instruction.Create(C($"{op}_rm{b}_imm8"), mem.Operand(), 5 + 9 * i);
                    ins.HasLockPrefix = true;
                    return Variant.Of(ins, mem, OperandRef.Memory);
                }).ToList();
                forms.Add(new Form { Family = "atomic", Name = $"lock bts/btr/btc m{b}, imm", Variants = lockedBits, DefinedFlags = _ => FlagRules.BitTest });
            }
        }

        Action<CaseContext> equalPair(int half) => c =>
        {
            if (c.Rng.Next(2) != 0) return;
            c.SetLow(Rax, half, c.ReadScratch(c.EffectiveOffset, half / 8));
            c.SetLow(Rdx, half, c.ReadScratch(c.EffectiveOffset + half / 8, half / 8));
        };
        forms.Add(new Form { Family = "atomic", Name = "cmpxchg8b m64", Prepare = equalPair(32),
            Variants = [.. Mem(Code.Cmpxchg8b_m64).Take(2), .. Mem(Code.Cmpxchg8b_m64, locked: true).Skip(2)] });
        bool cx16 = (X86Base.CpuId(1, 0).Ecx & (1 << 13)) != 0;
        forms.Add(new Form { Family = "atomic", Name = "cmpxchg16b m128", Prepare = equalPair(64),
            HostMissing = cx16 ? null : "the host has no CMPXCHG16B",
            Variants = [.. Mem(Code.Cmpxchg16b_m128, align: 16).Take(2), .. Mem(Code.Cmpxchg16b_m128, align: 16, locked: true).Skip(2)] });
    }
}
