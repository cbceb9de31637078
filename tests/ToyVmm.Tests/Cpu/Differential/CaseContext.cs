using System.Buffers.Binary;
using ToyVmm.Cpu;
using Iced.Intel;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// Builds one random input for a variant: registers, flags, XMM and memory
/// biased towards edge values, with the memory operand pointed into scratch.
/// Deterministic for a given seed.
/// </summary>
public sealed class CaseContext
{
    private static readonly ulong[] Edges =
    [
        0, 1, 2, 3, ulong.MaxValue, ulong.MaxValue - 1,
        0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
        0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000,
        0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, 0xFFFF_FFFF_FFFF_FF80, 0xFFFF_FFFF_8000_0000,
        31, 32, 33, 63, 64, 65, 8, 9, 15, 16, 17, 0x55555555_55555555, 0xAAAAAAAA_AAAAAAAA,
    ];

    private static readonly ulong[] DoubleEdges =
    [
        0x0000_0000_0000_0000, 0x8000_0000_0000_0000,           // +0, -0
        0x3FF0_0000_0000_0000, 0xBFF0_0000_0000_0000,           // 1, -1
        0x7FF0_0000_0000_0000, 0xFFF0_0000_0000_0000,           // +inf, -inf
        0x7FF8_0000_0000_0000, 0xFFF8_0000_0000_0000,           // quiet NaNs
        0x7FF0_0000_0000_0001, 0x7FF4_0000_0000_1234,           // signalling NaNs
        0x0000_0000_0000_0001, 0x800F_FFFF_FFFF_FFFF,           // denormals
        0x7FEF_FFFF_FFFF_FFFF, 0x0010_0000_0000_0000,           // max, min normal
        0x43E0_0000_0000_0000, 0xC3E0_0000_0000_0000,           // +-2^63
        0x43DF_FFFF_FFFF_FFFF, 0xC3E0_0000_0000_0001,           // just inside / outside int64
        0x41DF_FFFF_FFE0_0000, 0x41DF_FFFF_FFFF_FFFF, 0xC1E0_0000_0000_0000, 0xC1E0_0000_0010_0000, // int32 limits
        0x3FE0_0000_0000_0000, 0xBFF8_0000_0000_0000, 0x4000_0000_0000_0000, // 0.5, -1.5, 2
    ];

    public CaseContext(Random rng, ulong regionBase, Variant variant)
    {
        Rng = rng;
        RegionBase = regionBase;
        Variant = variant;
        State = new MachineState();
    }

    public Random Rng { get; }
    public ulong RegionBase { get; }
    public Variant Variant { get; }
    public MachineState State { get; }

    /// <summary>Scratch offset of the memory operand's effective address (valid when the variant has one).</summary>
    public int EffectiveOffset { get; private set; } = -1;

    public ulong InitialRsp => RegionBase + RegionLayout.InitialRspOffset;
    public ulong ScratchAddress(int offset) => MachineState.ScratchAddress(RegionBase, offset);

    /// <summary>A 64-bit value biased to edges: all-random, edges, small, sign-extended, single bits.</summary>
    public ulong Value()
    {
        switch (Rng.Next(10))
        {
            case 0 or 1 or 2: return Random64();
            case 3: return Edges[Rng.Next(Edges.Length)];
            case 4: return (Random64() & ~0xFFFFUL) | (Edges[Rng.Next(Edges.Length)] & 0xFFFF);
            case 5: return (Random64() & ~0xFFFF_FFFFUL) | (Edges[Rng.Next(Edges.Length)] & 0xFFFF_FFFF);
            case 6: return (ulong)(long)Rng.Next(-70, 70);
            case 7:
            {
                int width = Rng.Next(1, 64);
                ulong v = Random64() & ((1UL << width) - 1);
                return (v & (1UL << (width - 1))) != 0 ? v | ~((1UL << width) - 1) : v;
            }
            case 8: return Rng.Next(2) == 0 ? 1UL << Rng.Next(64) : ~(1UL << Rng.Next(64));
            default: return Random64() & (Rng.Next(2) == 0 ? 0x00FF_00FF_00FF_00FFUL : 0xFFFF_0000_FFFF_0000UL) ^ (Rng.Next(2) == 0 ? 0 : ~0UL);
        }
    }

    public ulong Random64() => (ulong)Rng.NextInt64() ^ ((ulong)Rng.Next(2) << 63);

    public ulong DoubleBits() => Rng.Next(3) switch
    {
        0 => DoubleEdges[Rng.Next(DoubleEdges.Length)],
        1 => BitConverter.DoubleToUInt64Bits((Rng.NextDouble() - 0.5) * Math.Pow(2, Rng.Next(-80, 80))),
        _ => BitConverter.DoubleToUInt64Bits(Rng.Next(-100000, 100000) / (double)(1 << Rng.Next(0, 4))),
    };

    private UInt128 XmmValue(StateProfile profile)
    {
        if (profile is not (StateProfile.Sse or StateProfile.Mmx) || Rng.Next(4) == 0) return new UInt128(Value(), Value());
        return Rng.Next(3) switch
        {
            0 => new UInt128(DoubleBits(), DoubleBits()),
            1 => new UInt128(Random64() & 0x8080_8080_8080_8080 ^ Random64() & 0x0101_0101_0101_0101, Value()),
            _ => new UInt128(Value(), DoubleBits()),
        };
    }

    /// <summary>Fills the whole state at random for <paramref name="profile"/>, then points the memory operand into scratch.</summary>
    public void Generate(StateProfile profile)
    {
        var s = State;
        for (int i = 0; i < 16; i++) s.Gpr[i] = Value();
        s.Gpr[(int)Gpr.Rsp] = InitialRsp;
        s.Rflags = (ulong)Rng.Next(64) switch
        {
            var b => ((b & 1) != 0 ? FlagRules.CF : 0) | ((b & 2) != 0 ? FlagRules.PF : 0) | ((b & 4) != 0 ? FlagRules.AF : 0) |
                     ((b & 8) != 0 ? FlagRules.ZF : 0) | ((b & 16) != 0 ? FlagRules.SF : 0) | ((b & 32) != 0 ? FlagRules.OF : 0),
        };
        if (profile == StateProfile.String && Rng.Next(2) == 0) s.Rflags |= FlagRules.DF;
        for (int i = 0; i < 16; i++) s.Xmm[i] = XmmValue(profile);
        if (profile is StateProfile.Sse or StateProfile.Mmx && Rng.Next(3) == 0)
        {
            // Another rounding mode, FZ, DAZ, some sticky flags already set; exceptions stay masked.
            uint m = 0x1F80 | (uint)Rng.Next(4) << 13;
            if (Rng.Next(4) == 0) m |= 0x8000;
            if (Rng.Next(4) == 0) m |= 0x40;
            if (Rng.Next(2) == 0) m |= (uint)Rng.Next(64);
            s.Mxcsr = m;
        }
        if (profile == StateProfile.Sse && Rng.Next(3) == 0)
        {
            // equal lanes across registers so compares and min/max see ties
            int a = Rng.Next(16), b = Rng.Next(16);
            s.Xmm[a] = Rng.Next(2) == 0 ? s.Xmm[b] : (s.Xmm[a] & ~(UInt128)ulong.MaxValue) | (s.Xmm[b] & ulong.MaxValue);
        }
        Rng.NextBytes(s.Scratch);
        Rng.NextBytes(s.StackWindow);
        if (profile == StateProfile.String && Rng.Next(3) != 0)
            for (int i = 0; i < s.Scratch.Length; i++) s.Scratch[i] = (byte)(Rng.Next(8) == 0 ? 1 : 0);
        if (profile is StateProfile.Sse or StateProfile.Mmx)
            for (int i = 0; i < 128; i++)
                BinaryPrimitives.WriteUInt64LittleEndian(s.Scratch.AsSpan(Rng.Next(s.Scratch.Length / 8) * 8), DoubleBits());
        for (int i = 0; i < 16; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(s.StackWindow.AsSpan(RegionLayout.InitialRspOffset - RegionLayout.StackWindowOffset - 64 + 8 * i), Value());

        if (profile == StateProfile.Mmx) GenerateX87();
        if (Variant.Mem is { } mem) PointMemory(mem, profile);
    }

    /// <summary>
    /// A random x87 state (what the MMX registers alias): any TOP, condition codes and tags, 80-bit
    /// registers with edge significands and any sign and exponent; precision and rounding control
    /// at random, every x87 exception masked (a sticky flag may be set), so nothing is pending.
    /// </summary>
    private void GenerateX87()
    {
        var s = State;
        s.Fcw = (ushort)(0x037F & ~0x0F00 | Rng.Next(16) << 8);
        s.Fsw = (ushort)(Rng.Next(8) << 11 | (Rng.Next(16) is var c ? (c & 7) << 8 | (c & 8) << 11 : 0) | (Rng.Next(4) == 0 ? Rng.Next(64) : 0));
        s.Ftw = Rng.Next(4) switch { 0 => 0, 1 => 0xFF, _ => (byte)Rng.Next(256) };
        for (int i = 0; i < 8; i++)
            s.St[i] = new UInt128(Rng.Next(4) == 0 ? 0xFFFFUL : (ulong)Rng.Next(0x10000), Value());
    }

    private void PointMemory(MemSpec mem, StateProfile profile)
    {
        int ea = Rng.Next(4) switch
        {
            0 => 0x1000 - Rng.Next(0, 17),          // straddles the page boundary inside scratch
            1 => Rng.Next(0x100, 0x1F00) & ~7,
            _ => Rng.Next(0x100, 0x1F00),
        };
        ea &= ~(mem.Align - 1);
        EffectiveOffset = ea;
        ulong index = 0;
        if (mem.Index != Register.None)
        {
            index = (ulong)Rng.Next(0, 16);
            State.Gpr[GprIndex(mem.Index)] = index;
        }
        if (mem.Base == Register.RSP) throw new InvalidOperationException("rsp-based operands address the stack window, not scratch");
        State.Gpr[GprIndex(mem.Base)] = unchecked(ScratchAddress(ea) - (ulong)(long)mem.Disp - index * (ulong)mem.Scale);
        if (mem.Is32)
        {
            // 32-bit addressing reads only the low halves: the high ones are noise, and the
            // address may wrap at 4 GiB (a large displacement).
            ulong b = State.Gpr[GprIndex(mem.Base)];
            State.Gpr[GprIndex(mem.Base)] = (uint)b | (Random64() << 32);
            if (mem.Index != Register.None) State.Gpr[GprIndex(mem.Index)] = (uint)index | (Random64() << 32);
        }
        if (Rng.Next(2) == 0)
        {
            WriteScratch(ea, profile is StateProfile.Sse or StateProfile.Mmx ? DoubleBits() : Value(), 8);
            WriteScratch(ea + 8, profile is StateProfile.Sse or StateProfile.Mmx ? DoubleBits() : Value(), 8);
        }
    }

    public static int GprIndex(Register r) => r.GetFullRegister() - Register.RAX;

    public ulong ReadScratch(int offset, int bytes)
    {
        ulong v = 0;
        for (int i = bytes - 1; i >= 0; i--) v = (v << 8) | State.Scratch[offset + i];
        return v;
    }

    public void WriteScratch(int offset, ulong value, int bytes)
    {
        for (int i = 0; i < bytes; i++, value >>= 8) State.Scratch[offset + i] = (byte)value;
    }

    /// <summary>Reads the variant's r/m operand as a <paramref name="bits"/>-bit value.</summary>
    public ulong ReadRm(int bits)
    {
        var rm = Variant.Rm ?? throw new InvalidOperationException("the variant names no r/m operand");
        if (rm.IsMemory) return ReadScratch(EffectiveOffset, bits / 8);
        ulong v = State.Gpr[rm.Gpr] >> (rm.HighByte ? 8 : 0);
        return bits == 64 ? v : v & ((1UL << bits) - 1);
    }

    /// <summary>Writes the variant's r/m operand's low <paramref name="bits"/> bits.</summary>
    public void WriteRm(int bits, ulong value)
    {
        var rm = Variant.Rm ?? throw new InvalidOperationException("the variant names no r/m operand");
        if (rm.IsMemory) { WriteScratch(EffectiveOffset, value, bits / 8); return; }
        int shift = rm.HighByte ? 8 : 0;
        ulong mask = (bits == 64 ? ulong.MaxValue : (1UL << bits) - 1) << shift;
        State.Gpr[rm.Gpr] = (State.Gpr[rm.Gpr] & ~mask) | ((value << shift) & mask);
    }

    public void SetLow(int gpr, int bits, ulong value)
    {
        ulong mask = bits == 64 ? ulong.MaxValue : (1UL << bits) - 1;
        State.Gpr[gpr] = (State.Gpr[gpr] & ~mask) | (value & mask);
    }
}
