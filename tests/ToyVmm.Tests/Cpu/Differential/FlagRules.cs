namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// Which flags are architecturally defined after each instruction (Intel SDM
/// vol. 2 and AMD APM vol. 3; where they disagree, the stricter "undefined").
/// A flag the instruction leaves unaffected is defined: it must be preserved.
/// </summary>
public static class FlagRules
{
    public const ulong CF = MachineState.CF, PF = MachineState.PF, AF = MachineState.AF, ZF = MachineState.ZF,
        SF = MachineState.SF, DF = MachineState.DF, OF = MachineState.OF;

    public const ulong All = CF | PF | AF | ZF | SF | OF | DF;
    /// <summary>and/or/xor/test: AF undefined.</summary>
    public const ulong Logic = All & ~AF;
    /// <summary>mul/imul: SF ZF AF PF undefined.</summary>
    public const ulong Multiply = CF | OF | DF;
    /// <summary>div/idiv: every arithmetic flag undefined.</summary>
    public const ulong Divide = DF;
    /// <summary>bt/bts/btr/btc: CF; AMD leaves ZF undefined too.</summary>
    public const ulong BitTest = CF | DF;
    /// <summary>bsf/bsr: ZF.</summary>
    public const ulong BitScan = ZF | DF;
    /// <summary>tzcnt/lzcnt: ZF and CF.</summary>
    public const ulong CountZeros = ZF | CF | DF;

    public enum Shift { Shl, Shr, Sar, Rol, Ror, Rcl, Rcr }

    /// <summary>Flags defined after a shift or rotate of a <paramref name="bits"/>-bit operand by <paramref name="rawCount"/>.</summary>
    public static ulong AfterShift(Shift op, int bits, ulong rawCount)
    {
        ulong count = rawCount & (bits == 64 ? 63UL : 31UL);
        if (count == 0) return All; // nothing is affected
        ulong m = All;
        if (count != 1) m &= ~OF;
        switch (op)
        {
            case Shift.Shl or Shift.Shr:
                m &= ~AF;
                if (count >= (ulong)bits) m &= ~CF;
                break;
            case Shift.Sar:
                m &= ~AF;
                break;
        }
        return m;
    }

    /// <summary>Flags defined after shld/shrd by <paramref name="rawCount"/> (counts above the size are never generated).</summary>
    public static ulong AfterDoubleShift(int bits, ulong rawCount)
    {
        ulong count = rawCount & (bits == 64 ? 63UL : 31UL);
        if (count == 0) return All;
        ulong m = All & ~AF;
        if (count != 1) m &= ~OF;
        return m;
    }
}
