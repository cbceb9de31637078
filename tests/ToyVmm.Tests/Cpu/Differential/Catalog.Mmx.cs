using Iced.Intel;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// The MMX-register forms (MMX, SSE's and SSE2's additions on MMX registers, the MMX/XMM
/// conversions), from random x87 states (any TOP, tags, condition codes, 80-bit contents): every
/// case compares the x87 register file, FSW (TOP), the abridged tag word and FCW besides the rest,
/// so the aliasing of MMi onto Ri and the x87 transition (tags valid, TOP 0; emms: tags empty) are
/// checked by every form; the fxsave forms check them through memory too.
/// </summary>
public static partial class Catalog
{
    /// <summary>MMX register pairs (dst, src), including dst == src.</summary>
    private static readonly (int D, int S)[] MmPairs = [(0, 1), (3, 3), (7, 2), (5, 6)];

    private static Register M(int i) => Register.MM0 + i;

    private static Form Mmx(string name, List<Variant> variants, Action<CaseContext>? prepare = null) =>
        new() { Family = "mmx", Name = name, Variants = variants, Profile = StateProfile.Mmx, Prepare = prepare };

    private static List<Variant> MmMm(Code code, int? imm = null) =>
        MmPairs.Select(p => Variant.Of(imm is int i ? Instruction.Create(code, M(p.D), M(p.S), i) : Instruction.Create(code, M(p.D), M(p.S)))).ToList();

    private static List<Variant> MmMem(Code code, int align = 1, int? imm = null) =>
        MemPairs(64).Take(2).Select((p, i) => Variant.Of(imm is int k
            ? Instruction.Create(code, M(MmPairs[i].D), p.Mem.Aligned(align).Operand(), k)
            : Instruction.Create(code, M(MmPairs[i].D), p.Mem.Aligned(align).Operand()), p.Mem.Aligned(align), OperandRef.Memory)).ToList();

    /// <summary>Sets MMi (the significand of physical register i, ST((i - TOP) &amp; 7)) in the input, keeping its exponent.</summary>
    internal static void SetMm(CaseContext c, int i, ulong value)
    {
        int st = (i - ((c.State.Fsw >> 11) & 7)) & 7;
        c.State.St[st] = (c.State.St[st] & ~(UInt128)ulong.MaxValue) | value;
    }

    /// <summary>Most shift counts (the source's 64 bits) are small so that results are not all zero.</summary>
    private static void SmallMmShiftCount(CaseContext c)
    {
        ulong count = c.Rng.Next(4) == 0 ? c.Value() : (ulong)c.Rng.Next(0, 70);
        foreach (var (_, s) in MmPairs) SetMm(c, s, count);
        if (c.EffectiveOffset >= 0) c.WriteScratch(c.EffectiveOffset, count, 8);
    }

    /// <summary>Zeroes MXCSR_MASK in an fxsave image at the operand + <paramref name="at"/>: it says which MXCSR bits the CPU has, not state.</summary>
    private static Instruction ClearMxcsrMask(MemSpec m, int at) =>
        Instruction.Create(Code.Mov_rm32_imm32, new MemoryOperand(m.Base, m.Index, m.Scale, m.Disp + at + 28, 8), 0);

    private static void AddMmx(List<Form> forms)
    {
        string[] binary =
        [
            "Pxor", "Por", "Pand", "Pandn", "Paddb", "Paddw", "Paddd", "Paddq", "Psubb", "Psubw", "Psubd", "Psubq",
            "Paddsb", "Paddsw", "Paddusb", "Paddusw", "Psubsb", "Psubsw", "Psubusb", "Psubusw",
            "Pcmpeqb", "Pcmpeqw", "Pcmpeqd", "Pcmpgtb", "Pcmpgtw", "Pcmpgtd",
            "Punpckhbw", "Punpckhwd", "Punpckhdq", "Packsswb", "Packssdw", "Packuswb",
            "Pmullw", "Pmulhw", "Pmulhuw", "Pmuludq", "Pmaddwd",
            "Pminub", "Pmaxub", "Pminsw", "Pmaxsw", "Pavgb", "Pavgw", "Psadbw",
        ];
        foreach (var name in binary)
            forms.Add(Mmx($"{name.ToLowerInvariant()} mm, mm/m64", [.. MmMm(C($"{name}_mm_mmm64")), .. MmMem(C($"{name}_mm_mmm64"))]));
        foreach (var name in new[] { "Punpcklbw", "Punpcklwd", "Punpckldq" })
            forms.Add(Mmx($"{name.ToLowerInvariant()} mm, mm/m32", [.. MmMm(C($"{name}_mm_mmm32")), .. MmMem(C($"{name}_mm_mmm32"))]));

        foreach (var name in new[] { "Psrlw", "Psrld", "Psrlq", "Psllw", "Pslld", "Psllq", "Psraw", "Psrad" })
        {
            string n = name.ToLowerInvariant();
            forms.Add(Mmx($"{n} mm, imm8",
                new[] { 0, 1, 7, 15, 16, 31, 32, 63, 64, 200 }.Select((imm, i) => Variant.Of(Instruction.Create(C($"{name}_mm_imm8"), M(MmPairs[i % 4].D), imm))).ToList()));
            forms.Add(Mmx($"{n} mm, mm/m64", [.. MmMm(C($"{name}_mm_mmm64")), .. MmMem(C($"{name}_mm_mmm64"))], prepare: SmallMmShiftCount));
        }

        forms.Add(Mmx("pshufw mm, mm/m64, imm8",
            new[] { 0x00, 0x1B, 0xE4, 0x4E, 0xB1, 0xFF }.Select((imm, i) => i < 4
                ? Variant.Of(Instruction.Create(Code.Pshufw_mm_mmm64_imm8, M(MmPairs[i].D), M(MmPairs[i].S), imm))
                : MmMem(Code.Pshufw_mm_mmm64_imm8, imm: imm)[i - 4]).ToList()));

        // moves between MMX registers, GPRs, memory and XMM registers
        forms.Add(Mmx("movd mm, r32/m32", [.. new[] { Rax, R9 }.Select((r, i) => Variant.Of(Instruction.Create(Code.Movd_mm_rm32, M(MmPairs[i].D), R(32, r)))), .. MmMem(Code.Movd_mm_rm32)]));
        forms.Add(Mmx("movd r32/m32, mm",
            [.. new[] { Rcx, R14 }.Select((r, i) => Variant.Of(Instruction.Create(Code.Movd_rm32_mm, R(32, r), M(MmPairs[i + 1].S)))),
             .. MemPairs(64).Take(2).Select((p, i) => Variant.Of(Instruction.Create(Code.Movd_rm32_mm, p.Mem.Operand(), M(MmPairs[i].S)), p.Mem, OperandRef.Memory))]));
        forms.Add(Mmx("movq mm, r64/m64", [.. new[] { Rdx, R15 }.Select((r, i) => Variant.Of(Instruction.Create(Code.Movq_mm_rm64, M(MmPairs[i].D), R(64, r)))), .. MmMem(Code.Movq_mm_rm64)]));
        forms.Add(Mmx("movq r64/m64, mm",
            [.. new[] { Rsi, R8 }.Select((r, i) => Variant.Of(Instruction.Create(Code.Movq_rm64_mm, R(64, r), M(MmPairs[i + 1].S)))),
             .. MemPairs(64).Take(2).Select((p, i) => Variant.Of(Instruction.Create(Code.Movq_rm64_mm, p.Mem.Operand(), M(MmPairs[i].S)), p.Mem, OperandRef.Memory))]));
        forms.Add(Mmx("movq mm, mm/m64", [.. MmMm(Code.Movq_mm_mmm64), .. MmMem(Code.Movq_mm_mmm64)]));
        forms.Add(Mmx("movq mm/m64, mm (0F 7F)",
            [.. MmPairs.Select(p => Variant.Of(Instruction.Create(Code.Movq_mmm64_mm, M(p.D), M(p.S)))),
             .. MemPairs(64).Take(2).Select((p, i) => Variant.Of(Instruction.Create(Code.Movq_mmm64_mm, p.Mem.Operand(), M(MmPairs[i].S)), p.Mem, OperandRef.Memory))]));
        forms.Add(Mmx("movntq m64, mm",
            MemPairs(64).Select((p, i) => Variant.Of(Instruction.Create(Code.Movntq_m64_mm, p.Mem.Operand(), M(MmPairs[i].S)), p.Mem, OperandRef.Memory)).ToList()));
        forms.Add(Mmx("movdq2q mm, xmm", MmPairs.Select((p, i) => Variant.Of(Instruction.Create(Code.Movdq2q_mm_xmm, M(p.D), X(XmmPairs[i].S)))).ToList()));
        forms.Add(Mmx("movq2dq xmm, mm", MmPairs.Select((p, i) => Variant.Of(Instruction.Create(Code.Movq2dq_xmm_mm, X(XmmPairs[i].D), M(p.S)))).ToList()));

        forms.Add(Mmx("pmovmskb r, mm",
            [.. MmPairs.Select((p, i) => Variant.Of(Instruction.Create(Code.Pmovmskb_r32_mm, R(32, new[] { Rax, R10, Rdx, R15 }[i]), M(p.S)))),
             Variant.Of(Instruction.Create(Code.Pmovmskb_r64_mm, Register.R11, M(4)))]));
        forms.Add(Mmx("pextrw r, mm, imm8",
            [.. new[] { 0, 1, 2, 3, 5 }.Select((imm, i) => Variant.Of(Instruction.Create(Code.Pextrw_r32_mm_imm8, R(32, new[] { Rax, R10, Rdx, R15, Rcx }[i]), M(MmPairs[i % 4].S), imm))),
             Variant.Of(Instruction.Create(Code.Pextrw_r64_mm_imm8, Register.R11, M(4), 2))]));
        forms.Add(Mmx("pinsrw mm, r32/m16, imm8",
            [.. new[] { 0, 1, 2, 3, 6 }.Select((imm, i) => Variant.Of(Instruction.Create(Code.Pinsrw_mm_r32m16_imm8, M(MmPairs[i % 4].D), R(32, new[] { Rax, R10, Rdx, R15, Rcx }[i]), imm))),
             .. MemPairs(64).Take(2).Select((p, i) => Variant.Of(Instruction.Create(Code.Pinsrw_mm_r32m16_imm8, M(MmPairs[i].D), p.Mem.Operand(), 1 + 2 * i), p.Mem, OperandRef.Memory))]));

        forms.Add(Mmx("maskmovq mm, mm ([rdi])", MmPairs.Select(p => new Variant(
            a => a.AddInstruction(Instruction.CreateMaskmovq(64, M(p.D), M(p.S))),
            Prepare: c => c.State.Gpr[Rdi] = c.ScratchAddress(c.Rng.Next(2) == 0 ? 0x1000 - c.Rng.Next(1, 8) : c.Rng.Next(0x100, 0x1F00)))).ToList()));

        forms.Add(Mmx("emms", [Variant.Of(Instruction.Create(Code.Emms)), new Variant(a =>
        {
            a.AddInstruction(Instruction.Create(Code.Paddw_mm_mmm64, M(2), M(5)));
            a.AddInstruction(Instruction.Create(Code.Emms));
        })]));

        // Conversions between MMX and XMM registers, under random MXCSR states (MXCSR compared too).
        forms.Add(Mmx("cvtpi2ps xmm, mm/m64",
            [.. MmPairs.Select((p, i) => Variant.Of(Instruction.Create(Code.Cvtpi2ps_xmm_mmm64, X(XmmPairs[i].D), M(p.S)))),
             .. MemPairs(64).Take(2).Select((p, i) => Variant.Of(Instruction.Create(Code.Cvtpi2ps_xmm_mmm64, X(XmmPairs[i].D), p.Mem.Operand()), p.Mem, OperandRef.Memory))]));
        forms.Add(Mmx("cvtpi2pd xmm, mm/m64",
            [.. MmPairs.Select((p, i) => Variant.Of(Instruction.Create(Code.Cvtpi2pd_xmm_mmm64, X(XmmPairs[i].D), M(p.S)))),
             .. MemPairs(64).Take(2).Select((p, i) => Variant.Of(Instruction.Create(Code.Cvtpi2pd_xmm_mmm64, X(XmmPairs[i].D), p.Mem.Operand()), p.Mem, OperandRef.Memory))]));
        foreach (var (name, width, align) in new[] { ("Cvtps2pi", "m64", 1), ("Cvttps2pi", "m64", 1), ("Cvtpd2pi", "m128", 16), ("Cvttpd2pi", "m128", 16) })
            forms.Add(Mmx($"{name.ToLowerInvariant()} mm, xmm/{width}",
                [.. MmPairs.Select((p, i) => Variant.Of(Instruction.Create(C($"{name}_mm_xmm{width}"), M(p.D), X(XmmPairs[i].S)))),
                 .. MemPairs(64).Take(2).Select((p, i) => Variant.Of(Instruction.Create(C($"{name}_mm_xmm{width}"), M(MmPairs[i].D), p.Mem.Aligned(align).Operand()), p.Mem.Aligned(align), OperandRef.Memory))]));

        // The aliasing seen through memory: fxsave after MMX instructions writes the registers in
        // stack order, TOP, tags; fxrstor of an image with another TOP, then an MMX instruction.
        forms.Add(Mmx("movq mm, m64; paddb; fxsave m512", MemPairs(64).Take(2).Select(p => new Variant(a =>
        {
            var m = p.Mem.Aligned(16);
            a.AddInstruction(Instruction.Create(Code.Movq_mm_mmm64, M(3), m.Operand()));
            a.AddInstruction(Instruction.Create(Code.Paddb_mm_mmm64, M(3), M(6)));
            a.AddInstruction(Instruction.Create(Code.Fxsave64_m512byte, m.Operand()));
            a.AddInstruction(ClearMxcsrMask(p.Mem, 0));
        }, p.Mem.Aligned(16), OperandRef.Memory, c => { if (c.EffectiveOffset > 0x2000 - 512) c.State.Gpr[CaseContext.GprIndex(p.Mem.Base)] -= 0x400; })).ToList()));
        forms.Add(Mmx("fxsave m512; emms; fxsave m512", MemPairs(64).Take(1).Select(p => new Variant(a =>
        {
            var m = p.Mem.Aligned(16);
            a.AddInstruction(Instruction.Create(Code.Fxsave64_m512byte, m.Operand()));
            a.AddInstruction(Instruction.Create(Code.Emms));
            a.AddInstruction(Instruction.Create(Code.Fxsave64_m512byte, new MemoryOperand(p.Mem.Base, p.Mem.Index, p.Mem.Scale, p.Mem.Disp + 512, 8)));
            a.AddInstruction(ClearMxcsrMask(p.Mem, 0));
            a.AddInstruction(ClearMxcsrMask(p.Mem, 512));
        }, p.Mem.Aligned(16), OperandRef.Memory, c => { if (c.EffectiveOffset > 0x2000 - 1024) c.State.Gpr[CaseContext.GprIndex(p.Mem.Base)] -= 0x800; })).ToList()));
        forms.Add(Mmx("fxrstor m512 (TOP 5); pxor mm; fxsave m512", MemPairs(64).Take(1).Select(p => new Variant(a =>
        {
            var m = p.Mem.Aligned(16);
            a.AddInstruction(Instruction.Create(Code.Mov_rm32_imm32, new MemoryOperand(p.Mem.Base, p.Mem.Index, p.Mem.Scale, p.Mem.Disp, 8), 0x6900_037F));
            a.AddInstruction(Instruction.Create(Code.Mov_rm32_imm32, new MemoryOperand(p.Mem.Base, p.Mem.Index, p.Mem.Scale, p.Mem.Disp + 24, 8), 0x1F80));
            a.AddInstruction(Instruction.Create(Code.Fxrstor64_m512byte, m.Operand()));
            a.AddInstruction(Instruction.Create(Code.Pxor_mm_mmm64, M(1), M(4)));
            a.AddInstruction(Instruction.Create(Code.Fxsave64_m512byte, m.Operand()));
            a.AddInstruction(ClearMxcsrMask(p.Mem, 0));
        }, p.Mem.Aligned(16), OperandRef.Memory, c => { if (c.EffectiveOffset > 0x2000 - 512) c.State.Gpr[CaseContext.GprIndex(p.Mem.Base)] -= 0x400; })).ToList()));
        // fxrstor derives FSW.ES and B from the exception flags and masks; every flag stays masked
        // or the next case would start with an exception pending.
        forms.Add(Mmx("fxrstor m512 (FSW.ES/B not matching the flags); fxsave m512", new[] { 0x0081, 0x8000, 0x0080, 0x00BF, 0x8001 }.Select(fsw => new Variant(a =>
        {
            var p = MemPairs(64)[0];
            var m = p.Mem.Aligned(16);
            a.AddInstruction(Instruction.Create(Code.Mov_rm32_imm32, new MemoryOperand(p.Mem.Base, p.Mem.Index, p.Mem.Scale, p.Mem.Disp, 8), fsw << 16 | 0x037F));
            a.AddInstruction(Instruction.Create(Code.Mov_rm32_imm32, new MemoryOperand(p.Mem.Base, p.Mem.Index, p.Mem.Scale, p.Mem.Disp + 24, 8), 0x1F80));
            a.AddInstruction(Instruction.Create(Code.Fxrstor64_m512byte, m.Operand()));
            a.AddInstruction(Instruction.Create(Code.Fxsave64_m512byte, m.Operand()));
            a.AddInstruction(ClearMxcsrMask(p.Mem, 0));
        }, MemPairs(64)[0].Mem.Aligned(16), OperandRef.Memory, c => { if (c.EffectiveOffset > 0x2000 - 512) c.State.Gpr[CaseContext.GprIndex(MemPairs(64)[0].Mem.Base)] -= 0x400; })).ToList()));
    }
}
