using System.Reflection;
using ToyVmm.Cpu.Ops;

namespace ToyVmm.Cpu.Tier;

/// <summary>What the compiler knows how to emit for an op, read from the op's handler.</summary>
internal enum CKind : byte
{
    MovRR, MovRI, MovRI64, MovRM, MovMR, MovMI, Lea, ZxM, SxM, SxR,
    /// <summary>add/sub/and/or/xor/cmp/test reg, reg|imm|mem or cmp/test mem, reg|imm (no memory written).</summary>
    Alu,
    Nop,
    /// <summary>not r; neg r (flags as sub 0, r).</summary>
    Not, Neg,
    /// <summary>imul r, r and imul r, r, imm (X = 1).</summary>
    Imul,
    /// <summary>shl/shr/sar of a register by a nonzero immediate (other shift forms are left to the interpreter).</summary>
    Shift,
    Jcc, Jmp, Call, Ret,
    /// <summary>inc/dec of a register (Form RR) or of memory (Form MI); CF kept.</summary>
    Inc, Dec,
    /// <summary>movzx from a register.</summary>
    ZxR,
    /// <summary>cdqe, cdq, cqo.</summary>
    Cdqe, Cdq, Cqo,
    /// <summary>push r64, pop r64.</summary>
    Push, Pop,
    /// <summary>cmovcc r, r (Form RR) or r, m (Form RM); the condition is the op's X.</summary>
    Cmov,
    /// <summary>setcc r8 (Form RR) or m8 (Form MI); the condition is the op's X.</summary>
    Set,
    /// <summary>SSE/SSE2 xmm = O.Do(xmm, xmm/m, imm) (Sse.V2: integer, logic, shuffle and move forms; O in OpInfo.Sse).</summary>
    SseV2,
    /// <summary>movd/movq/movss/movsd load (zero-extending), movd/movq/movss/movsd/movdqa/movaps/movdqu/movups store.</summary>
    SseLoad, SseStore,
    /// <summary>movd/movq between a general register and an xmm register.</summary>
    GprToXmm, XmmToGpr,
    /// <summary>div/idiv r/m32, r/m64 (Cc = 1: signed), in the forms that cannot raise #DE and need no 128-bit dividend.</summary>
    Div,
}

/// <summary>The ALU operation of an <see cref="CKind.Alu"/> op.</summary>
internal enum CAlu : byte { Add, Sub, And, Or, Xor, Cmp, Test, Adc, Sbb }

/// <summary>Where an ALU op's operands are: destination first (RM: register, memory).</summary>
internal enum CForm : byte { RR, RI, RM, MR, MI }

/// <summary>One compilable handler: its kind, operand size (log2 of bytes), and the details of its kind.</summary>
internal readonly record struct OpInfo(CKind Kind, int Log, CAlu Alu = CAlu.Add, CForm Form = CForm.RR, int Cc = 0, int SrcLog = 0, Type? Sse = null);

/// <summary>
/// Handler address to meaning. Every op of a block carries its handler, bound at decode time
/// (generic over operation, size and condition); the compiler reads what an op does from that
/// address. A handler not in the table is not compiled: the compiled block hands over to the
/// interpreter at that op, so an instruction added to the interpreter keeps working unchanged.
/// </summary>
/// <remarks>
/// The addresses come from reflection (<c>RuntimeMethodHandle.GetFunctionPointer</c>), which
/// gives the same stable entry point as the <c>&amp;Method</c> the binders store (a test pins it).
/// 8- and 16-bit register forms are left out (their register operands are byte offsets).
/// </remarks>
internal static unsafe class HandlerTable
{
    public static bool TryGet(nint handler, out OpInfo info) => Table.TryGetValue(handler, out info);

    public static int Count => Table.Count;

    /// <summary>Whether this op, with this handler, compiles (a few handlers decide by operand).</summary>
    public static bool Compilable(in OpInfo info, in Op op) => info.Kind switch
    {
        // Register operand, immediate count, shl/shr/sar, and a count that is not zero after
        // masking (a zero count leaves the flags alone, which the compiler does not model).
        CKind.Shift => op.Y == 0 && op.X <= 2 && (op.Imm & (info.Log == 3 ? 63 : 31)) != 0,
        _ => true,
    };

    private static readonly Type[] Sizes = [typeof(S8), typeof(S16), typeof(S32), typeof(S64)];
    private static readonly Type[] Conds =
    [
        typeof(Co), typeof(Cno), typeof(Cb), typeof(Cae), typeof(Ce), typeof(Cne), typeof(Cbe), typeof(Ca),
        typeof(Cs), typeof(Cns), typeof(Cp), typeof(Cnp), typeof(Cl), typeof(Cge), typeof(Cle), typeof(Cg),
    ];

    // After Sizes and Conds: static fields initialise in declaration order.
    private static readonly Dictionary<nint, OpInfo> Table = Build();

    private static Dictionary<nint, OpInfo> Build()
    {
        var t = new Dictionary<nint, OpInfo>();
        (Type Op, CAlu Alu, bool Writes)[] alus =
        [
            (typeof(AddOp), CAlu.Add, true), (typeof(SubOp), CAlu.Sub, true), (typeof(AndOp), CAlu.And, true),
            (typeof(OrOp), CAlu.Or, true), (typeof(XorOp), CAlu.Xor, true), (typeof(CmpOp), CAlu.Cmp, false),
            (typeof(TestOp), CAlu.Test, false), (typeof(AdcOp), CAlu.Adc, true), (typeof(SbbOp), CAlu.Sbb, true),
        ];
        for (int lg = 0; lg <= 3; lg++)
        {
            Type sz = Sizes[lg];
            Add(t, typeof(Mov), nameof(Mov.RR), [sz], new OpInfo(CKind.MovRR, lg));
            Add(t, typeof(Mov), nameof(Mov.RI), [sz], new OpInfo(CKind.MovRI, lg));
            Add(t, typeof(Mov), nameof(Mov.RM), [sz], new OpInfo(CKind.MovRM, lg));
            if (lg > 0) Add(t, typeof(Mov), nameof(Mov.Lea), [sz], new OpInfo(CKind.Lea, lg));
            foreach (var (op, alu, writes) in alus)
            {
                Add(t, typeof(Alu), nameof(Ops.Alu.RR), [op, sz], new OpInfo(CKind.Alu, lg, alu, CForm.RR));
                Add(t, typeof(Alu), nameof(Ops.Alu.RI), [op, sz], new OpInfo(CKind.Alu, lg, alu, CForm.RI));
                Add(t, typeof(Alu), nameof(Ops.Alu.RM), [op, sz], new OpInfo(CKind.Alu, lg, alu, CForm.RM));
                // Memory destinations: compare/test read it; the others are plain (unlocked)
                // read-modify-writes (lock forms have handlers of their own, left to the interpreter).
                Add(t, typeof(Alu), nameof(Ops.Alu.MR), [op, sz], new OpInfo(CKind.Alu, lg, alu, CForm.MR));
                Add(t, typeof(Alu), nameof(Ops.Alu.MI), [op, sz], new OpInfo(CKind.Alu, lg, alu, CForm.MI));
            }
            (Type P, CAlu Alu)[] pure = [(typeof(PAdd), CAlu.Add), (typeof(PSub), CAlu.Sub), (typeof(POr), CAlu.Or), (typeof(PAnd), CAlu.And), (typeof(PXor), CAlu.Xor)];
            foreach (var (p, alu) in pure)
            {
                Add(t, typeof(DeadFlags), nameof(DeadFlags.RR), [p, sz], new OpInfo(CKind.Alu, lg, alu, CForm.RR));
                Add(t, typeof(DeadFlags), nameof(DeadFlags.RI), [p, sz], new OpInfo(CKind.Alu, lg, alu, CForm.RI));
            }
            foreach (var (f, alu) in new[] { (typeof(FCmp), CAlu.Cmp), (typeof(FTest), CAlu.Test) })
                for (int cc = 0; cc < 16; cc++)
                {
                    Add(t, typeof(Fused), nameof(Fused.RR), [f, sz, Conds[cc]], new OpInfo(CKind.Alu, lg, alu, CForm.RR));
                    Add(t, typeof(Fused), nameof(Fused.RI), [f, sz, Conds[cc]], new OpInfo(CKind.Alu, lg, alu, CForm.RI));
                    Add(t, typeof(Fused), nameof(Fused.RM), [f, sz, Conds[cc]], new OpInfo(CKind.Alu, lg, alu, CForm.RM));
                    Add(t, typeof(Fused), nameof(Fused.MR), [f, sz, Conds[cc]], new OpInfo(CKind.Alu, lg, alu, CForm.MR));
                    Add(t, typeof(Fused), nameof(Fused.MI), [f, sz, Conds[cc]], new OpInfo(CKind.Alu, lg, alu, CForm.MI));
                }
            Add(t, typeof(Mov), nameof(Mov.MR), [sz], new OpInfo(CKind.MovMR, lg));
            Add(t, typeof(Unary), nameof(Unary.R), [typeof(NotOp), sz], new OpInfo(CKind.Not, lg));
            Add(t, typeof(Unary), nameof(Unary.R), [typeof(NegOp), sz], new OpInfo(CKind.Neg, lg));
            Add(t, typeof(Unary), nameof(Unary.M), [typeof(NotOp), sz], new OpInfo(CKind.Not, lg, Form: CForm.MI));
            Add(t, typeof(Unary), nameof(Unary.M), [typeof(NegOp), sz], new OpInfo(CKind.Neg, lg, Form: CForm.MI));
            Add(t, typeof(Unary), nameof(Unary.R), [typeof(IncOp), sz], new OpInfo(CKind.Inc, lg));
            Add(t, typeof(Unary), nameof(Unary.R), [typeof(DecOp), sz], new OpInfo(CKind.Dec, lg));
            Add(t, typeof(Unary), nameof(Unary.M), [typeof(IncOp), sz], new OpInfo(CKind.Inc, lg, Form: CForm.MI));
            Add(t, typeof(Unary), nameof(Unary.M), [typeof(DecOp), sz], new OpInfo(CKind.Dec, lg, Form: CForm.MI));
            if (lg >= 1)
            {
                Add(t, typeof(MulDiv), nameof(MulDiv.Imul2R), [sz], new OpInfo(CKind.Imul, lg));
                Add(t, typeof(MulDiv), nameof(MulDiv.Imul2), [sz], new OpInfo(CKind.Imul, lg, Form: CForm.RM));
                Add(t, typeof(Mov), nameof(Mov.CmovR), [sz], new OpInfo(CKind.Cmov, lg));
                Add(t, typeof(Mov), nameof(Mov.CmovM), [sz], new OpInfo(CKind.Cmov, lg, Form: CForm.RM));
                Add(t, typeof(Shifts), nameof(Shifts.Shift), [sz], new OpInfo(CKind.Shift, lg));
            }
            if (lg >= 2)
            {
                Add(t, typeof(MulDiv), nameof(MulDiv.Div), [sz], new OpInfo(CKind.Div, lg));
                Add(t, typeof(MulDiv), nameof(MulDiv.Idiv), [sz], new OpInfo(CKind.Div, lg, Cc: 1));
            }
        }
        for (int lg = 0; lg <= 3; lg++)
            Add(t, typeof(Mov), nameof(Mov.MI), [Sizes[lg]], new OpInfo(CKind.MovMI, lg));
        // movzx/movsx from memory: the destination is a 32/64-bit register index.
        foreach (int d in new[] { 2, 3 })
        {
            Add(t, typeof(Mov), nameof(Mov.ZxM), [Sizes[d], typeof(S8)], new OpInfo(CKind.ZxM, d, SrcLog: 0));
            Add(t, typeof(Mov), nameof(Mov.ZxM), [Sizes[d], typeof(S16)], new OpInfo(CKind.ZxM, d, SrcLog: 1));
            Add(t, typeof(Mov), nameof(Mov.SxM), [Sizes[d], typeof(S8)], new OpInfo(CKind.SxM, d, SrcLog: 0));
            Add(t, typeof(Mov), nameof(Mov.SxM), [Sizes[d], typeof(S16)], new OpInfo(CKind.SxM, d, SrcLog: 1));
            Add(t, typeof(Mov), nameof(Mov.SxR), [Sizes[d], typeof(S16)], new OpInfo(CKind.SxR, d, SrcLog: 1));
        }
        foreach (int d in new[] { 1, 2, 3 })
        {
            Add(t, typeof(Mov), nameof(Mov.ZxR), [Sizes[d], typeof(S8)], new OpInfo(CKind.ZxR, d, SrcLog: 0));
            Add(t, typeof(Mov), nameof(Mov.SxR), [Sizes[d], typeof(S8)], new OpInfo(CKind.SxR, d, SrcLog: 0));
            if (d > 1) Add(t, typeof(Mov), nameof(Mov.ZxR), [Sizes[d], typeof(S16)], new OpInfo(CKind.ZxR, d, SrcLog: 1));
        }
        Add(t, typeof(Mov), nameof(Mov.Cdqe), [], new OpInfo(CKind.Cdqe, 3));
        Add(t, typeof(Mov), nameof(Mov.Cdq), [], new OpInfo(CKind.Cdq, 3));
        Add(t, typeof(Mov), nameof(Mov.Cqo), [], new OpInfo(CKind.Cqo, 3));
        Add(t, typeof(Stack), nameof(Stack.PushR), [], new OpInfo(CKind.Push, 3));
        Add(t, typeof(Stack), nameof(Stack.PopR), [], new OpInfo(CKind.Pop, 3));
        Add(t, typeof(Mov), nameof(Mov.SetR), [], new OpInfo(CKind.Set, 0));
        Add(t, typeof(Mov), nameof(Mov.SetM), [], new OpInfo(CKind.Set, 0, Form: CForm.MI));
        Add(t, typeof(Mov), nameof(Mov.SxM), [typeof(S64), typeof(S32)], new OpInfo(CKind.SxM, 3, SrcLog: 2));
        Add(t, typeof(Mov), nameof(Mov.SxR), [typeof(S64), typeof(S32)], new OpInfo(CKind.SxR, 3, SrcLog: 2));
        Add(t, typeof(Mov), nameof(Mov.RI64), [], new OpInfo(CKind.MovRI64, 3));
        Add(t, typeof(Mov), nameof(Mov.Nop), [], new OpInfo(CKind.Nop, 3));
        for (int cc = 0; cc < 16; cc++)
            Add(t, typeof(Control), nameof(Control.Jcc), [Conds[cc]], new OpInfo(CKind.Jcc, 3, Cc: cc));
        Add(t, typeof(Control), nameof(Control.Jmp), [], new OpInfo(CKind.Jmp, 3));
        Add(t, typeof(Control), nameof(Control.Call), [], new OpInfo(CKind.Call, 3));
        Add(t, typeof(Control), nameof(Control.Ret), [], new OpInfo(CKind.Ret, 3));
        // Every SSE operation the interpreter runs through Sse.V2: its Do is a pure function of
        // (dst, src, imm), so compiled code calls the very same one (the floating-point forms
        // are bound to Sse.Fp's MXCSR-honouring handlers instead and stay interpreted).
        foreach (Type o in typeof(Sse).Assembly.GetTypes())
            if (o.IsValueType && !o.IsGenericTypeDefinition && typeof(IV2).IsAssignableFrom(o))
                Add(t, typeof(Sse), nameof(Sse.V2), [o], new OpInfo(CKind.SseV2, 4, Sse: o));
        Add(t, typeof(Sse), nameof(Sse.LoadZx), [], new OpInfo(CKind.SseLoad, 4));
        Add(t, typeof(Sse), nameof(Sse.StoreM), [], new OpInfo(CKind.SseStore, 4));
        Add(t, typeof(Sse), nameof(Sse.GprToXmm), [], new OpInfo(CKind.GprToXmm, 4));
        Add(t, typeof(Sse), nameof(Sse.XmmToGpr), [], new OpInfo(CKind.XmmToGpr, 4));
        return t;
    }

    private static void Add(Dictionary<nint, OpInfo> t, Type owner, string name, Type[] args, OpInfo info)
    {
        MethodInfo m = owner.GetMethod(name, BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static)
            ?? throw new InvalidOperationException($"{owner.Name}.{name} not found");
        if (args.Length > 0) m = m.MakeGenericMethod(args);
        t[m.MethodHandle.GetFunctionPointer()] = info;
    }
}
