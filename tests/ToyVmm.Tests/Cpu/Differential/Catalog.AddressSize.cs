using Iced.Intel;

namespace ToyVmm.Tests.Cpu.Differential;

public static partial class Catalog
{
    private static string? NeedsLowRegion => NativeRunner.Instance.RegionBelow4G ? null : "the native block is above 4 GiB (no MAP_32BIT)";

    /// <summary>32-bit address registers (0x67): noise in their high halves, one address that wraps at 4 GiB.</summary>
    internal static (MemSpec Mem, OperandRef Data)[] MemPairs32() =>
    [
        (new(Register.EBX, Register.None, 1, 0x10), new(Rax)),
        (new(Register.R13D, Register.R14D, 8, 0x1234), new(R9)),
        (new(Register.EBP, Register.None, 1, -0x30), new(Rsi)),
        (new(Register.R12D, Register.None, 1, 0x7000_0000), new(Rdx)),
    ];

    private static List<Variant> RegMem32(Code code, int regBits) =>
        MemPairs32().Select(p => Variant.Of(Instruction.Create(code, Reg(regBits, p.Data), p.Mem.Operand()), p.Mem, OperandRef.Memory)).ToList();

    private static List<Variant> MemReg32(Code code, int regBits) =>
        MemPairs32().Select(p => Variant.Of(Instruction.Create(code, p.Mem.Operand(), Reg(regBits, p.Data)), p.Mem, OperandRef.Memory)).ToList();

    private static void AddAddressSize(List<Form> forms)
    {
        const string f = "addr32";
        Form F(string name, List<Variant> v, Func<MachineState, ulong>? flags = null, StateProfile profile = StateProfile.Integer, Action<CaseContext>? prepare = null, int cases = 48) =>
            new() { Family = f, Name = name, Variants = v, HostMissing = NeedsLowRegion, DefinedFlags = flags ?? (_ => FlagRules.All), Profile = profile, Prepare = prepare, CasesPerVariant = cases };

        forms.Add(F("mov r32, m32", RegMem32(Code.Mov_r32_rm32, 32)));
        forms.Add(F("mov m64, r64", MemReg32(Code.Mov_rm64_r64, 64)));
        forms.Add(F("mov r16, m16 / mov m8, r8", [.. RegMem32(Code.Mov_r16_rm16, 16).Take(2), .. MemReg32(Code.Mov_rm8_r8, 8).Skip(2)]));
        forms.Add(F("add m32, r32 / sub r64, m64", [.. MemReg32(Code.Add_rm32_r32, 32).Take(2), .. RegMem32(Code.Sub_r64_rm64, 64).Skip(2)]));
        forms.Add(F("movzx r32, m8 / movsxd r64, m32", [.. RegMem32(Code.Movzx_r32_rm8, 32).Take(2), .. RegMem32(Code.Movsxd_r64_rm32, 64).Skip(2)]));
        forms.Add(F("inc m32 / lock xadd m64, r64", [.. MemPairs32().Take(2).Select(p => Variant.Of(Instruction.Create(Code.Inc_rm32, p.Mem.Operand()), p.Mem, OperandRef.Memory)),
            .. MemPairs32().Skip(2).Select(p =>
            {
                var i = Instruction.Create(Code.Xadd_rm64_r64, p.Mem.Operand(), Register.RCX);
                i.HasLockPrefix = true;
                return Variant.Of(i, p.Mem, OperandRef.Memory);
            })]));
        forms.Add(F("push m64 / pop m64", [.. MemPairs32().Take(2).Select(p => Variant.Of(Instruction.Create(Code.Push_rm64, p.Mem.Operand()), p.Mem, OperandRef.Memory)),
            .. MemPairs32().Skip(2).Select(p => Variant.Of(Instruction.Create(Code.Pop_rm64, p.Mem.Operand()), p.Mem, OperandRef.Memory))]));
        forms.Add(F("movdqu xmm, m128 / movsd m64, xmm", [.. MemPairs32().Take(2).Select(p => Variant.Of(Instruction.Create(Code.Movdqu_xmm_xmmm128, Register.XMM3, p.Mem.Operand()), p.Mem, OperandRef.Memory)),
            .. MemPairs32().Skip(2).Select(p => Variant.Of(Instruction.Create(Code.Movsd_xmmm64_xmm, p.Mem.Operand(), Register.XMM9), p.Mem, OperandRef.Memory))], profile: StateProfile.Sse));
        // cmp with a 32-bit address followed by jcc: the fused compare-and-branch reads through the prefix op.
        forms.Add(F("cmp m32, imm; jcc", MemPairs32().Select(p => new Variant(a =>
        {
            Label taken = a.CreateLabel(), done = a.CreateLabel();
            a.AddInstruction(Instruction.Create(Code.Cmp_rm32_imm8, p.Mem.Operand(), 5));
            a.AddInstruction(Instruction.CreateBranch(Code.Jb_rel8_64, taken.Id));
            a.AddInstruction(Instruction.Create(Code.Mov_r32_imm32, Register.R8D, 1));
            a.jmp(done);
            a.Label(ref taken);
            a.AddInstruction(Instruction.Create(Code.Mov_r32_imm32, Register.R8D, 2));
            a.Label(ref done);
            a.nop();
        }, p.Mem, OperandRef.Memory)).ToList()));
        ulong target = NativeRunner.Instance.RegionBase + RegionLayout.ScratchOffset + 0x234;
        forms.Add(F("mov r64, [eip+disp]", [Variant.Of(Instruction.Create(Code.Mov_r64_rm64, Register.R10, new MemoryOperand(Register.EIP, (long)(uint)target)))], cases: 16));

        // String instructions with ESI/EDI/ECX: the high halves are noise and are cleared.
        Action<CaseContext> strings(int unit) => c =>
        {
            StringOperands(c, unit);
            foreach (int r in new[] { Rsi, Rdi, Rcx }) c.State.Gpr[r] = (uint)c.State.Gpr[r] | (c.Random64() << 32);
        };
        foreach (var (suffix, unit) in new (char, int)[] { ('b', 1), ('w', 2), ('d', 4), ('q', 8) })
        {
            Instruction Make(string op, RepPrefixKind rep) => (op, suffix) switch
            {
                ("movs", 'b') => Instruction.CreateMovsb(32, repPrefix: rep),
                ("movs", 'w') => Instruction.CreateMovsw(32, repPrefix: rep),
                ("movs", 'd') => Instruction.CreateMovsd(32, repPrefix: rep),
                ("movs", _) => Instruction.CreateMovsq(32, repPrefix: rep),
                ("stos", 'b') => Instruction.CreateStosb(32, rep),
                ("stos", 'w') => Instruction.CreateStosw(32, rep),
                ("stos", 'd') => Instruction.CreateStosd(32, rep),
                ("stos", _) => Instruction.CreateStosq(32, rep),
                ("lods", 'b') => Instruction.CreateLodsb(32, repPrefix: rep),
                ("lods", 'w') => Instruction.CreateLodsw(32, repPrefix: rep),
                ("lods", 'd') => Instruction.CreateLodsd(32, repPrefix: rep),
                ("lods", _) => Instruction.CreateLodsq(32, repPrefix: rep),
                ("cmps", 'b') => Instruction.CreateCmpsb(32, repPrefix: rep),
                ("cmps", 'w') => Instruction.CreateCmpsw(32, repPrefix: rep),
                ("cmps", 'd') => Instruction.CreateCmpsd(32, repPrefix: rep),
                ("cmps", _) => Instruction.CreateCmpsq(32, repPrefix: rep),
                ("scas", 'b') => Instruction.CreateScasb(32, rep),
                ("scas", 'w') => Instruction.CreateScasw(32, rep),
                ("scas", 'd') => Instruction.CreateScasd(32, rep),
                _ => Instruction.CreateScasq(32, rep),
            };
            int u = unit;
            foreach (var op in new[] { "movs", "stos", "lods" })
                forms.Add(F($"{op}{suffix} / rep {op}{suffix} (esi, edi, ecx)", [Variant.Of(Make(op, RepPrefixKind.None)), Variant.Of(Make(op, RepPrefixKind.Repe))],
                    profile: StateProfile.String, prepare: strings(u), cases: 32));
            foreach (var op in new[] { "cmps", "scas" })
                forms.Add(F($"{op}{suffix} / repe / repne (esi, edi, ecx)", [Variant.Of(Make(op, RepPrefixKind.None)), Variant.Of(Make(op, RepPrefixKind.Repe)), Variant.Of(Make(op, RepPrefixKind.Repne))],
                    profile: StateProfile.String, prepare: strings(u), cases: 32));
        }

        // loop/loope/loopne with ECX (count 1..40, noise above) and jecxz with ECX zero or not.
        Action<CaseContext> count = c => c.State.Gpr[Rcx] = (uint)c.Rng.Next(1, 40) | (c.Rng.Next(2) == 0 ? 0 : c.Random64() << 32);
        forms.Add(F("loop/loope/loopne ecx", new[] { Code.Loop_rel8_64_ECX, Code.Loope_rel8_64_ECX, Code.Loopne_rel8_64_ECX }.Select(code => new Variant(a =>
        {
            Label top = a.CreateLabel();
            a.Label(ref top);
            a.AddInstruction(Instruction.Create(Code.Add_rm64_imm8, Register.R8, 3));
            a.AddInstruction(Instruction.Create(Code.Cmp_r64_rm64, Register.R8, Register.R9));
            a.AddInstruction(Instruction.CreateBranch(code, top.Id));
        })).ToList(), prepare: c => { count(c); c.State.Gpr[R8] = (ulong)c.Rng.Next(0, 20); c.State.Gpr[R9] = (ulong)c.Rng.Next(0, 80); }));
        forms.Add(F("jecxz", [new Variant(a =>
        {
            Label taken = a.CreateLabel(), done = a.CreateLabel();
            a.AddInstruction(Instruction.CreateBranch(Code.Jecxz_rel8_64, taken.Id));
            a.AddInstruction(Instruction.Create(Code.Mov_r32_imm32, Register.R8D, 1));
            a.jmp(done);
            a.Label(ref taken);
            a.AddInstruction(Instruction.Create(Code.Mov_r32_imm32, Register.R8D, 2));
            a.Label(ref done);
            a.nop();
        })], prepare: c => c.State.Gpr[Rcx] = (c.Rng.Next(2) == 0 ? 0UL : (uint)c.Rng.Next(1, 5)) | (c.Rng.Next(2) == 0 ? 0 : c.Random64() << 32), cases: 64));
    }
}

public static partial class Catalog
{
    /// <summary>The hint space 0F 0D / 0F 18-0F 1F (NOPs here, whatever the ModRM says), maskmovdqu, fwait.</summary>
    private static void AddHintsAndMisc(List<Form> forms)
    {
        Variant Raw(params byte[] bytes) => new(a => a.db(bytes));
        forms.Add(new Form { Family = "misc", Name = "reserved NOP and prefetch hints 0F 0D, 0F 18-0F 1F", CasesPerVariant = 8,
            Variants =
            [
                Raw(0x0F, 0x18, 0x00), Raw(0x0F, 0x18, 0x4B, 0x10), Raw(0x0F, 0x18, 0x13), Raw(0x41, 0x0F, 0x18, 0x1A), // prefetchnta/t0/t1/t2
                Raw(0x0F, 0x18, 0x20), Raw(0x0F, 0x18, 0xF8), Raw(0x48, 0x0F, 0x18, 0x3C, 0x24),                      // 0F 18 /4../7
                Raw(0x0F, 0x19, 0x84, 0x81, 0x00, 0x10, 0x00, 0x00), Raw(0x0F, 0x19, 0xC3),
                Raw(0x0F, 0x1A, 0x03), Raw(0x0F, 0x1A, 0xC8), Raw(0xF3, 0x0F, 0x1A, 0x0B), Raw(0x66, 0x0F, 0x1A, 0xC1),   // MPX space
                Raw(0x0F, 0x1B, 0x0B), Raw(0xF2, 0x0F, 0x1B, 0x03), Raw(0xF3, 0x0F, 0x1B, 0x0C, 0x0B),
                Raw(0x0F, 0x1C, 0x08), Raw(0x0F, 0x1C, 0xC0), Raw(0x0F, 0x1D, 0x40, 0x7F), Raw(0x0F, 0x1D, 0xD9),
                Raw(0x0F, 0x1E, 0x01), Raw(0xF3, 0x0F, 0x1E, 0xFA), Raw(0xF3, 0x0F, 0x1E, 0xFB), Raw(0x0F, 0x1E, 0xC8),
                Raw(0x0F, 0x1F, 0x00), Raw(0x66, 0x0F, 0x1F, 0x44, 0x00, 0x00), Raw(0x0F, 0x1F, 0x80, 0, 0, 0, 0), Raw(0x0F, 0x1F, 0xF8),
                Raw(0x0F, 0x0D, 0x08), Raw(0x0F, 0x0D, 0x00), Raw(0x67, 0x0F, 0x18, 0x08),
            ] });
        forms.Add(new Form { Family = "misc", Name = "fwait", CasesPerVariant = 8, Variants = [Raw(0x9B), Raw(0x9B, 0x9B)] });
        // maskmovdqu stores the selected bytes of xmm1 at [rdi] (or [edi]); the masks mix all, none and some.
        Action<CaseContext> masks = c =>
        {
            c.State.Gpr[Rdi] = c.ScratchAddress(c.Rng.Next(2) == 0 ? 0xFF8 - c.Rng.Next(0, 8) : c.Rng.Next(0x100, 0x1F00));
            ulong lo = c.Rng.Next(4) switch { 0 => 0, 1 => ulong.MaxValue, _ => c.Random64() };
            ulong hi = c.Rng.Next(4) switch { 0 => 0, 1 => ulong.MaxValue, _ => c.Random64() };
            c.State.Xmm[5] = new UInt128(hi, lo);
        };
        forms.Add(new Form { Family = "misc", Name = "maskmovdqu", Profile = StateProfile.Sse, HostMissing = NeedsLowRegion,
            Prepare = masks,
            Variants =
            [
                new Variant(a => a.db(0x66, 0x0F, 0xF7, 0xD5)),         // maskmovdqu xmm2, xmm5 through [rdi]
                new Variant(a => a.db(0x67, 0x66, 0x0F, 0xF7, 0xD5)),   // maskmovdqu xmm2, xmm5 through [edi]
            ] });
    }
}
