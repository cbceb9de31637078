using Iced.Intel;

namespace ToyVmm.Cpu;

/// <summary>Fills <paramref name="op"/> (handler and operands) for <paramref name="ins"/>; false when the form is not implemented (#UD).</summary>
internal unsafe delegate bool BindFn(in Instruction ins, Op* op);

/// <summary>
/// Decode-time binding from Iced's <see cref="Mnemonic"/> to a handler with its
/// operands resolved. Each instruction group (Ops/*.cs) registers its mnemonics
/// in <c>Register()</c>; nothing here runs per executed instruction.
/// </summary>
internal static unsafe class Binder
{
    private static readonly BindFn?[] Table = new BindFn?[Enum.GetValues<Mnemonic>().Length + 1];
    private static readonly bool[] Ends = new bool[Table.Length];

    static Binder()
    {
        Ops.Control.Register();
        Ops.Alu.Register();
        Ops.Mov.Register();
        Ops.Stack.Register();
        Ops.MulDiv.Register();
        Ops.Shifts.Register();
        Ops.Bits.Register();
        Ops.StringOps.Register();
        Ops.Atomic.Register();
        Ops.SystemOps.Register();
        Ops.Sse.Register();
        Ops.Mmx.Register();   // after Sse: routes the MMX-register forms of the mnemonics the two share
    }

    /// <summary>Registers <paramref name="fn"/> for <paramref name="m"/>; <paramref name="endsBlock"/> stops decoding after it.</summary>
    public static void Add(Mnemonic m, BindFn fn, bool endsBlock = false)
    {
        Table[(int)m] = fn;
        Ends[(int)m] = endsBlock;
    }

    public static void Add(Mnemonic[] ms, BindFn fn, bool endsBlock = false)
    {
        foreach (var m in ms) Add(m, fn, endsBlock);
    }

    /// <summary>The binder registered for <paramref name="m"/>, or null.</summary>
    public static BindFn? Lookup(Mnemonic m) => Table[(int)m];

    public static bool EndsBlock(Mnemonic m) => Ends[(int)m];

    public static bool IsKnown(Mnemonic m) => Table[(int)m] != null;

    /// <summary>Binds <paramref name="ins"/> into <paramref name="op"/>; false when the instruction is not implemented.</summary>
    public static bool Bind(in Instruction ins, Op* op)
    {
        var fn = Table[(int)ins.Mnemonic];
        if (fn == null) return false;
        // 32-bit addressing (0x67) is handled by the decoder (Ops/AddressSize.cs); 16-bit cannot occur in 64-bit mode.
        return fn(ins, op);
    }

    public static bool HasMem(in Instruction ins)
    {
        for (int i = 0; i < ins.OpCount; i++)
            if (ins.GetOpKind(i) == OpKind.Memory) return true;
        return false;
    }
}
