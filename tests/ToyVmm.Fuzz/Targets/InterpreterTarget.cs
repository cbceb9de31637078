using ToyVmm.Vm;

namespace ToyVmm.Fuzz;

/// <summary>
/// The interpreter: random code with random register state, under every memory mode of
/// <see cref="MemoryModes.All"/> (a mode added there is fuzzed too). The input is
/// <code>
///   byte 0        memory mode (index into MemoryModes.All, modulo its count)
///   byte 1        bit 0: two vCPUs instead of one
///   bytes 2..137  RFLAGS, then RAX..R15 (17 little-endian words; missing bytes are 0)
///   bytes 138..   the code, at most 4 KiB
/// </code>
/// The guest starts with a prologue that loads RFLAGS and the sixteen registers (RSP
/// too) and falls into the code; every vCPU runs it. Checked: the run ends in a
/// guest-caused way within its instruction budget, with no invariant violation and a
/// consistent host (<see cref="GuestRun"/>).
/// </summary>
internal static class InterpreterTarget
{
    public static readonly FuzzTarget Target = new("interpreter",
        "mode, vCPUs, RFLAGS and 16 registers, then code: ends in a guest-caused way under every memory mode", Run);

    public const int HeaderBytes = 2 + 17 * 8;
    public const int MaxCodeBytes = 4096;
    /// <summary>Instructions per vCPU: enough for loops to wrap and faults to nest, little enough to run thousands of inputs a minute.</summary>
    public const long InstructionLimit = 20_000;

    private static void Run(byte[] data)
    {
        if (data.Length == 0) return;
        var mode = MemoryModes.All[data[0] % MemoryModes.All.Count];
        int vcpus = data.Length > 1 && (data[1] & 1) != 0 ? 2 : 1;
        var code = new List<byte>(HeaderBytes + MaxCodeBytes);
        // mov rax, imm64; push rax; popfq -- RFLAGS first, while RSP still points at the boot stack.
        EmitMovImm(code, 0, GuestImage.Word(data, 2));
        code.Add(0x50);
        code.Add(0x9D);
        for (int r = 0; r < 16; r++) EmitMovImm(code, r, GuestImage.Word(data, 2 + 8 + r * 8));
        if (data.Length > HeaderBytes)
            code.AddRange(data.AsSpan(HeaderBytes, Math.Min(MaxCodeBytes, data.Length - HeaderBytes)).ToArray());
        var image = GuestImage.FromCode(code.ToArray());
        GuestRun.Run(image, mode, vcpus, InstructionLimit, "random code");
    }

    /// <summary><c>mov r64, imm64</c> (REX.W [+B] B8+r).</summary>
    private static void EmitMovImm(List<byte> code, int register, ulong value)
    {
        code.Add((byte)(register < 8 ? 0x48 : 0x49));
        code.Add((byte)(0xB8 + (register & 7)));
        for (int i = 0; i < 8; i++) code.Add((byte)(value >> (8 * i)));
    }
}
