using System.Text;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// Everything a snippet may read or write: the 16 general registers, RFLAGS,
/// the 16 XMM registers and the two compared memory windows of the region.
/// </summary>
public sealed class MachineState
{
    public const ulong CF = 1UL << 0, PF = 1UL << 2, AF = 1UL << 4, ZF = 1UL << 6, SF = 1UL << 7, DF = 1UL << 10, OF = 1UL << 11;
    /// <summary>The flags a snippet's input may set (popfq of anything else could trap natively).</summary>
    public const ulong InputFlags = CF | PF | AF | ZF | SF | DF | OF;
    public const ulong ArithmeticFlags = CF | PF | AF | ZF | SF | OF;

    public static readonly string[] GprNames =
        ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

    public ulong[] Gpr { get; } = new ulong[16];
    public ulong Rflags { get; set; }
    /// <summary>MXCSR: rounding control, FZ, DAZ and the sticky flags (inputs keep every exception masked).</summary>
    public uint Mxcsr { get; set; } = 0x1F80;
    public UInt128[] Xmm { get; } = new UInt128[16];
    /// <summary>x87 control, status (TOP in bits 11-13) and abridged tag words, as fxsave stores them.</summary>
    public ushort Fcw { get; set; } = 0x37F;
    public ushort Fsw { get; set; }
    public byte Ftw { get; set; }
    /// <summary>ST(0)..ST(7) in fxsave's order, 80 bits each (significand, then sign and exponent); MMi is R[i], ST((i - TOP) &amp; 7).</summary>
    public UInt128[] St { get; } = new UInt128[8];
    public byte[] Scratch { get; } = new byte[RegionLayout.ScratchSize];
    public byte[] StackWindow { get; } = new byte[RegionLayout.StackWindowSize];

    public MachineState Clone()
    {
        var c = new MachineState { Rflags = Rflags, Mxcsr = Mxcsr, Fcw = Fcw, Fsw = Fsw, Ftw = Ftw };
        Gpr.CopyTo(c.Gpr, 0);
        St.CopyTo(c.St, 0);
        Xmm.CopyTo(c.Xmm, 0);
        Scratch.CopyTo(c.Scratch, 0);
        StackWindow.CopyTo(c.StackWindow, 0);
        return c;
    }

    /// <summary>Address of scratch byte <paramref name="offset"/> in a region based at <paramref name="regionBase"/>.</summary>
    public static ulong ScratchAddress(ulong regionBase, int offset) => regionBase + (ulong)RegionLayout.ScratchOffset + (ulong)offset;

    public static string FlagsText(ulong f)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInvariant($"0x{f:x}["));
        Append(sb, f, CF, "CF"); Append(sb, f, PF, "PF"); Append(sb, f, AF, "AF"); Append(sb, f, ZF, "ZF");
        Append(sb, f, SF, "SF"); Append(sb, f, DF, "DF"); Append(sb, f, OF, "OF");
        sb.Append(']');
        return sb.ToString();

        static void Append(StringBuilder sb, ulong f, ulong bit, string name)
        {
            if ((f & bit) != 0) sb.Append(sb[^1] == '[' ? "" : " ").Append(name);
        }
    }

    private static string CultureInvariant(FormattableString s) => FormattableString.Invariant(s);

    /// <summary>All registers and flags on one line each (memory is summarised by the caller).</summary>
    public string RegistersText(bool withXmm, bool withX87 = false)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < 16; i++)
            sb.Append(CultureInvariant($"{GprNames[i]}=0x{Gpr[i]:x16}")).Append(i % 4 == 3 ? "\n" : " ");
        sb.Append("rflags=").Append(FlagsText(Rflags)).Append(CultureInvariant($" mxcsr=0x{Mxcsr:x4}")).Append('\n');
        if (withXmm)
            for (int i = 0; i < 16; i++)
                sb.Append(CultureInvariant($"xmm{i}=0x{Xmm[i]:x32}")).Append(i % 2 == 1 ? "\n" : " ");
        if (withX87)
        {
            sb.Append(CultureInvariant($"fcw=0x{Fcw:x4} fsw=0x{Fsw:x4} (top {(Fsw >> 11) & 7}) ftw=0x{Ftw:x2}\n"));
            for (int i = 0; i < 8; i++)
                sb.Append(CultureInvariant($"st{i}=0x{(ushort)(St[i] >> 64):x4}_{(ulong)St[i]:x16}")).Append(i % 4 == 3 ? "\n" : " ");
        }
        return sb.ToString();
    }
}
