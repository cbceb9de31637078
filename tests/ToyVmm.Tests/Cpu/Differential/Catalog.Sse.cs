using Iced.Intel;

namespace ToyVmm.Tests.Cpu.Differential;

public static partial class Catalog
{
    /// <summary>XMM register pairs (dst, src), including dst == src and registers above xmm7.</summary>
    private static readonly (int D, int S)[] XmmPairs = [(0, 1), (9, 3), (15, 15), (4, 12)];

    private static Register X(int i) => Register.XMM0 + i;

    private static Form Sse(string family, string name, List<Variant> variants, Action<CaseContext>? prepare = null, ulong flags = FlagRules.All) =>
        new() { Family = family, Name = name, Variants = variants, Profile = StateProfile.Sse, Prepare = prepare, DefinedFlags = _ => flags };

    private static List<Variant> XmmXmm(Code code) =>
        XmmPairs.Select(p => Variant.Of(Instruction.Create(code, X(p.D), X(p.S)))).ToList();

    private static List<Variant> XmmMem(Code code, int align) =>
        MemPairs(64).Select((p, i) => Variant.Of(Instruction.Create(code, X(XmmPairs[i].D), p.Mem.Aligned(align).Operand()), p.Mem.Aligned(align), OperandRef.Memory)).ToList();

    private static List<Variant> MemXmm(Code code, int align) =>
        MemPairs(64).Select((p, i) => Variant.Of(Instruction.Create(code, p.Mem.Aligned(align).Operand(), X(XmmPairs[i].S)), p.Mem.Aligned(align), OperandRef.Memory)).ToList();

    private static void AddSseInteger(List<Form> forms)
    {
        const string f = "sse-int";
        // movd / movq between GPRs, memory and XMM
        forms.Add(Sse(f, "movd xmm, r32/m32", [.. new[] { Rax, R9 }.Select((r, i) => Variant.Of(Instruction.Create(Code.Movd_xmm_rm32, X(XmmPairs[i].D), R(32, r)))), .. XmmMem(Code.Movd_xmm_rm32, 1).Take(2)]));
        forms.Add(Sse(f, "movd r32/m32, xmm", [.. new[] { Rcx, R14 }.Select((r, i) => Variant.Of(Instruction.Create(Code.Movd_rm32_xmm, R(32, r), X(XmmPairs[i + 1].S)))), .. MemXmm(Code.Movd_rm32_xmm, 1).Take(2)]));
        forms.Add(Sse(f, "movq xmm, r64/m64", [.. new[] { Rdx, R15 }.Select((r, i) => Variant.Of(Instruction.Create(Code.Movq_xmm_rm64, X(XmmPairs[i].D), R(64, r)))), .. XmmMem(Code.Movq_xmm_rm64, 1).Take(2)]));
        forms.Add(Sse(f, "movq r64/m64, xmm", [.. new[] { Rsi, R8 }.Select((r, i) => Variant.Of(Instruction.Create(Code.Movq_rm64_xmm, R(64, r), X(XmmPairs[i + 1].S)))), .. MemXmm(Code.Movq_rm64_xmm, 1).Take(2)]));
        forms.Add(Sse(f, "movq xmm, xmm/m64", [.. XmmXmm(Code.Movq_xmm_xmmm64), .. XmmMem(Code.Movq_xmm_xmmm64, 1).Take(2)]));
        forms.Add(Sse(f, "movq xmm/m64, xmm (66 0F D6)", [.. XmmXmm(Code.Movq_xmmm64_xmm).Take(2), .. MemXmm(Code.Movq_xmmm64_xmm, 1).Take(2)]));

        foreach (var (name, aligned) in new[] { ("Movdqa", true), ("Movdqu", false), ("Movaps", true), ("Movups", false), ("Movapd", true) })
        {
            string n = name.ToLowerInvariant();
            forms.Add(Sse(f, $"{n} xmm, xmm/m128", [.. XmmXmm(C($"{name}_xmm_xmmm128")), .. XmmMem(C($"{name}_xmm_xmmm128"), aligned ? 16 : 1)]));
            forms.Add(Sse(f, $"{n} m128, xmm", MemXmm(C($"{name}_xmmm128_xmm"), aligned ? 16 : 1)));
        }

        string[] binary =
        [
            "Pxor", "Por", "Pand", "Pandn", "Paddb", "Paddw", "Paddd", "Paddq", "Psubb", "Psubw", "Psubd", "Psubq",
            "Pcmpeqb", "Pcmpeqw", "Pcmpeqd", "Pcmpgtb", "Pcmpgtw", "Pcmpgtd",
            "Punpcklbw", "Punpcklwd", "Punpckldq", "Punpcklqdq", "Punpckhbw", "Punpckhwd", "Punpckhdq", "Punpckhqdq",
        ];
        foreach (var name in binary)
            forms.Add(Sse(f, $"{name.ToLowerInvariant()} xmm, xmm/m128", [.. XmmXmm(C($"{name}_xmm_xmmm128")), .. XmmMem(C($"{name}_xmm_xmmm128"), 16).Take(2)]));

        forms.Add(Sse(f, "pmovmskb r, xmm",
            [.. XmmPairs.Select((p, i) => Variant.Of(Instruction.Create(Code.Pmovmskb_r32_xmm, R(32, new[] { Rax, R10, Rdx, R15 }[i]), X(p.S)))),
             Variant.Of(Instruction.Create(Code.Pmovmskb_r64_xmm, Register.R11, X(7)))]));
        forms.Add(Sse(f, "pshufd xmm, xmm/m128, imm8",
            new[] { 0x00, 0x1B, 0xE4, 0x4E, 0xB1, 0xFF, 0x93 }.Select((imm, i) => i < 5
                ? Variant.Of(Instruction.Create(Code.Pshufd_xmm_xmmm128_imm8, X(XmmPairs[i % 4].D), X(XmmPairs[i % 4].S), imm))
                : Variant.Of(Instruction.Create(Code.Pshufd_xmm_xmmm128_imm8, X(2), MemPairs(64)[i - 5].Mem.Aligned(16).Operand(), imm), MemPairs(64)[i - 5].Mem.Aligned(16), OperandRef.Memory)).ToList()));

        // shifts by immediate and by the low quadword of an XMM register
        foreach (var name in new[] { "Psrlw", "Psrld", "Psrlq", "Psllw", "Pslld", "Psllq", "Psraw", "Psrad" })
        {
            string n = name.ToLowerInvariant();
            forms.Add(Sse(f, $"{n} xmm, imm8",
                new[] { 0, 1, 7, 15, 16, 31, 32, 63, 64, 200 }.Select((imm, i) => Variant.Of(Instruction.Create(C($"{name}_xmm_imm8"), X(XmmPairs[i % 4].D), imm))).ToList()));
            forms.Add(Sse(f, $"{n} xmm, xmm/m128", [.. XmmXmm(C($"{name}_xmm_xmmm128")), .. XmmMem(C($"{name}_xmm_xmmm128"), 16).Take(2)],
                prepare: SmallShiftCount));
        }
        foreach (var name in new[] { "Psrldq", "Pslldq" })
            forms.Add(Sse(f, $"{name.ToLowerInvariant()} xmm, imm8",
                new[] { 0, 1, 4, 8, 15, 16, 17, 255 }.Select((imm, i) => Variant.Of(Instruction.Create(C($"{name}_xmm_imm8"), X(XmmPairs[i % 4].D), imm))).ToList()));
    }

    /// <summary>Most XMM shift counts (the source's low quadword) are small so that results are not all zero.</summary>
    private static void SmallShiftCount(CaseContext c)
    {
        ulong count = c.Rng.Next(4) == 0 ? c.Value() : (ulong)c.Rng.Next(0, 70);
        foreach (var (_, s) in XmmPairs)
            c.State.Xmm[s] = (c.State.Xmm[s] & ~(UInt128)ulong.MaxValue) | count;
        if (c.EffectiveOffset >= 0) c.WriteScratch(c.EffectiveOffset, count, 8);
    }

    private static void AddSseDouble(List<Form> forms)
    {
        const string f = "sse-fp";
        foreach (var name in new[] { "Addsd", "Subsd", "Mulsd", "Divsd", "Sqrtsd", "Minsd", "Maxsd" })
            forms.Add(Sse(f, $"{name.ToLowerInvariant()} xmm, xmm/m64", [.. XmmXmm(C($"{name}_xmm_xmmm64")), .. XmmMem(C($"{name}_xmm_xmmm64"), 1).Take(2)]));
        forms.Add(Sse(f, "cvtsi2sd xmm, r/m32",
            [.. new[] { Rax, R13 }.Select((r, i) => Variant.Of(Instruction.Create(Code.Cvtsi2sd_xmm_rm32, X(XmmPairs[i].D), R(32, r)))), .. XmmMem(Code.Cvtsi2sd_xmm_rm32, 1).Take(2)]));
        forms.Add(Sse(f, "cvtsi2sd xmm, r/m64",
            [.. new[] { Rcx, R8 }.Select((r, i) => Variant.Of(Instruction.Create(Code.Cvtsi2sd_xmm_rm64, X(XmmPairs[i].D), R(64, r)))), .. XmmMem(Code.Cvtsi2sd_xmm_rm64, 1).Take(2)]));
        foreach (int b in new[] { 32, 64 })
            forms.Add(Sse(f, $"cvttsd2si r{b}, xmm/m64",
                [.. XmmPairs.Select((p, i) => Variant.Of(Instruction.Create(C($"Cvttsd2si_r{b}_xmmm64"), R(b, new[] { Rax, R9, Rdx, R15 }[i]), X(p.S)))),
                 .. MemPairs(64).Take(2).Select(p => Variant.Of(Instruction.Create(C($"Cvttsd2si_r{b}_xmmm64"), R(b, p.Data.Gpr), p.Mem.Operand()), p.Mem, OperandRef.Memory))]));
        foreach (var name in new[] { "Ucomisd", "Comisd" })
            forms.Add(Sse(f, $"{name.ToLowerInvariant()} xmm, xmm/m64", [.. XmmXmm(C($"{name}_xmm_xmmm64")), .. XmmMem(C($"{name}_xmm_xmmm64"), 1).Take(2)]));
        // Under random MXCSR states (rounding control, FZ, DAZ, sticky flags): the single-precision and
        // packed arithmetic, compares, conversions; MXCSR itself is compared after every case.
        foreach (var name in new[] { "Addss", "Subss", "Mulss", "Divss", "Sqrtss", "Minss", "Maxss" })
            forms.Add(Sse(f, $"{name.ToLowerInvariant()} xmm, xmm/m32", [.. XmmXmm(C($"{name}_xmm_xmmm32")), .. XmmMem(C($"{name}_xmm_xmmm32"), 1).Take(2)]));
        foreach (var name in new[] { "Addpd", "Subpd", "Mulpd", "Divpd", "Sqrtpd", "Minpd", "Maxpd", "Addps", "Subps", "Mulps", "Divps", "Sqrtps", "Minps", "Maxps" })
            forms.Add(Sse(f, $"{name.ToLowerInvariant()} xmm, xmm/m128", [.. XmmXmm(C($"{name}_xmm_xmmm128")), .. XmmMem(C($"{name}_xmm_xmmm128"), 16).Take(2)]));
        foreach (var (name, width) in new[] { ("Rcpps", "m128"), ("Rsqrtps", "m128"), ("Rcpss", "m32"), ("Rsqrtss", "m32") })
            forms.Add(Sse(f, $"{name.ToLowerInvariant()} xmm, xmm/{width}", [.. XmmXmm(C($"{name}_xmm_xmm{width}")), .. XmmMem(C($"{name}_xmm_xmm{width}"), width == "m128" ? 16 : 1).Take(2)]));
        foreach (var (name, width) in new[] { ("Cmpsd", "m64"), ("Cmpss", "m32"), ("Cmppd", "m128"), ("Cmpps", "m128") })
            forms.Add(Sse(f, $"{name.ToLowerInvariant()} xmm, xmm/{width}, imm8",
                Enumerable.Range(0, 8).Select(p => p < 6
                    ? Variant.Of(Instruction.Create(C($"{name}_xmm_xmm{width}_imm8"), X(XmmPairs[p % 4].D), X(XmmPairs[p % 4].S), p))
                    : Variant.Of(Instruction.Create(C($"{name}_xmm_xmm{width}_imm8"), X(2), MemPairs(64)[p - 6].Mem.Aligned(16).Operand(), p), MemPairs(64)[p - 6].Mem.Aligned(16), OperandRef.Memory)).ToList()));
        foreach (var name in new[] { "Ucomiss", "Comiss" })
            forms.Add(Sse(f, $"{name.ToLowerInvariant()} xmm, xmm/m32", [.. XmmXmm(C($"{name}_xmm_xmmm32")), .. XmmMem(C($"{name}_xmm_xmmm32"), 1).Take(2)]));
        foreach (var (name, width) in new[] { ("Cvtsd2ss", "m64"), ("Cvtss2sd", "m32") })
            forms.Add(Sse(f, $"{name.ToLowerInvariant()} xmm, xmm/{width}", [.. XmmXmm(C($"{name}_xmm_xmm{width}")), .. XmmMem(C($"{name}_xmm_xmm{width}"), 1).Take(2)]));
        foreach (var (name, width) in new[] { ("Cvtps2dq", "m128"), ("Cvttps2dq", "m128"), ("Cvtpd2dq", "m128"), ("Cvttpd2dq", "m128"), ("Cvtdq2ps", "m128"),
                     ("Cvtpd2ps", "m128"), ("Cvtps2pd", "m64"), ("Cvtdq2pd", "m64") })
            forms.Add(Sse(f, $"{name.ToLowerInvariant()} xmm, xmm/{width}", [.. XmmXmm(C($"{name}_xmm_xmm{width}")), .. XmmMem(C($"{name}_xmm_xmm{width}"), width == "m128" ? 16 : 1).Take(2)]));
        foreach (var (name, src) in new[] { ("Cvtsd2si", "m64"), ("Cvtss2si", "m32"), ("Cvttss2si", "m32") })
            foreach (int b in new[] { 32, 64 })
                forms.Add(Sse(f, $"{name.ToLowerInvariant()} r{b}, xmm/{src}",
                    [.. XmmPairs.Select((p, i) => Variant.Of(Instruction.Create(C($"{name}_r{b}_xmm{src}"), R(b, new[] { Rax, R9, Rdx, R15 }[i]), X(p.S)))),
                     .. MemPairs(64).Take(2).Select(p => Variant.Of(Instruction.Create(C($"{name}_r{b}_xmm{src}"), R(b, p.Data.Gpr), p.Mem.Operand()), p.Mem, OperandRef.Memory))]));
        forms.Add(Sse(f, "cvtsi2ss xmm, r/m32",
            [.. new[] { Rax, R13 }.Select((r, i) => Variant.Of(Instruction.Create(Code.Cvtsi2ss_xmm_rm32, X(XmmPairs[i].D), R(32, r)))), .. XmmMem(Code.Cvtsi2ss_xmm_rm32, 1).Take(2)]));
        forms.Add(Sse(f, "cvtsi2ss xmm, r/m64",
            [.. new[] { Rcx, R8 }.Select((r, i) => Variant.Of(Instruction.Create(Code.Cvtsi2ss_xmm_rm64, X(XmmPairs[i].D), R(64, r)))), .. XmmMem(Code.Cvtsi2ss_xmm_rm64, 1).Take(2)]));
        // ldmxcsr, an operation, stmxcsr: the rounding mode and flags a guest sets and reads back itself.
        forms.Add(Sse(f, "ldmxcsr; addsd/divsd/cvtsd2si; stmxcsr", new[] { 0x1F80, 0x3F80, 0x5F80, 0x7F80, 0x9FC0, 0x1FBF }.Select(m => new Variant(a =>
        {
            a.AddInstruction(Instruction.Create(Code.Mov_rm32_imm32, new MemoryOperand(Register.RSP, -8, 1), m));
            a.AddInstruction(Instruction.Create(Code.Ldmxcsr_m32, new MemoryOperand(Register.RSP, -8, 1)));
            a.AddInstruction(Instruction.Create(Code.Addsd_xmm_xmmm64, Register.XMM0, Register.XMM1));
            a.AddInstruction(Instruction.Create(Code.Divsd_xmm_xmmm64, Register.XMM2, Register.XMM3));
            a.AddInstruction(Instruction.Create(Code.Cvtsd2si_r64_xmmm64, Register.R8, Register.XMM4));
            a.AddInstruction(Instruction.Create(Code.Cvtps2dq_xmm_xmmm128, Register.XMM5, Register.XMM6));
            a.AddInstruction(Instruction.Create(Code.Stmxcsr_m32, new MemoryOperand(Register.RSP, -16, 1)));
            a.AddInstruction(Instruction.Create(Code.Mov_r32_rm32, Register.R9D, new MemoryOperand(Register.RSP, -16, 1)));
        })).ToList()));

        forms.Add(Sse(f, "movsd xmm, xmm/m64", [.. XmmXmm(Code.Movsd_xmm_xmmm64), .. XmmMem(Code.Movsd_xmm_xmmm64, 1).Take(2)]));
        forms.Add(Sse(f, "movsd m64, xmm", MemXmm(Code.Movsd_xmmm64_xmm, 1)));
    }
}
