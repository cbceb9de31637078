using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.Intrinsics;

namespace ToyVmm.Cpu.Tier;

// SSE/SSE2 integer and move forms compiled inline: the XMM registers stay in the CpuState (every
// exit sees them there, nothing to write back), the operation is the interpreter's own
// IV2.Do (the same host SSE2 instruction, bit for bit), memory goes through the inline TLB probe.
// Anything the fast path refuses (SSE disabled by CR0/CR4, a misaligned movdqa, a 16-byte
// access that misses the TLB or crosses a page, a store to a code page) hands the instruction
// to the interpreter before any of it has happened, which faults or completes it exactly.
// Floating-point forms keep their MXCSR-honouring handlers (Sse.Fp.cs) in the interpreter.
internal sealed unsafe partial class BlockCompiler
{
    private static readonly Type V128 = typeof(Vector128<byte>);
    private static readonly MethodInfo CreateScalarM = typeof(Vector128).GetMethod(nameof(Vector128.CreateScalar), [typeof(ulong)])!;
    private static readonly MethodInfo AsByteM = typeof(Vector128).GetMethods()
        .Single(m => m.Name == nameof(Vector128.AsByte) && m.IsGenericMethodDefinition).MakeGenericMethod(typeof(ulong));

    private LocalBuilder? _xv;   // the source operand of the SSE op being emitted

    private void EmitSse(int i, OpInfo info)
    {
        ref Op op = ref _snap[i];
        int r = op.R, r2 = op.R2, width = op.X;
        var refuse = _il.DefineLabel();
        HandOverAt(refuse, i);
        // CR0.EM/TS, CR4.OSFXSR: the interpreter's handler raises #UD or #NM.
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldc_I4, StateLayout.SseFault);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldind_I4);
        _il.Emit(OpCodes.Brtrue, refuse);
        _xv ??= _il.DeclareLocal(V128);
        switch (info.Kind)
        {
            case CKind.SseV2:
                // dst = O.Do(dst, src, imm)
                if (op.Y == 0) { XmmAddr(r2); _il.Emit(OpCodes.Ldobj, V128); _il.Emit(OpCodes.Stloc, _xv); }
                else SseLoad(i, width, refuse);
                XmmAddr(r);
                XmmAddr(r);
                _il.Emit(OpCodes.Ldobj, V128);
                _il.Emit(OpCodes.Ldloc, _xv);
                _il.Emit(OpCodes.Ldc_I4, op.Imm);
                _il.Emit(OpCodes.Call, info.Sse!.GetMethod("Do", BindingFlags.Public | BindingFlags.Static)!);
                _il.Emit(OpCodes.Stobj, V128);
                break;
            case CKind.SseLoad:
                // movd/movq/movss/movsd loads: the scalar, zero-extended to 128 bits
                SseLoad(i, width, refuse);
                XmmAddr(r);
                _il.Emit(OpCodes.Ldloc, _xv);
                _il.Emit(OpCodes.Stobj, V128);
                break;
            case CKind.SseStore:
                Ea(i);
                if (width <= 1)
                {
                    if (width == 0) Misaligned(refuse);
                    ProbeWritable(4, refuse);
                    HostAddr();
                    XmmAddr(r);
                    _il.Emit(OpCodes.Ldobj, V128);
                    _il.Emit(OpCodes.Stobj, V128);
                }
                else Write(i, ScalarLog(width), () => { XmmAddr(r); _il.Emit(OpCodes.Ldind_I8); });
                break;
            case CKind.GprToXmm:
                XmmAddr(r);
                LdReg(r2, width == 3 ? 2 : 3);
                _il.Emit(OpCodes.Call, CreateScalarM);
                _il.Emit(OpCodes.Call, AsByteM);
                _il.Emit(OpCodes.Stobj, V128);
                break;
            case CKind.XmmToGpr:
                XmmAddr(r);
                _il.Emit(OpCodes.Ldind_I8);
                StReg(r2, width == 3 ? 2 : 3);
                break;
        }
    }

    /// <summary>
    /// _xv = the memory operand of op <paramref name="i"/> of width <paramref name="width"/>
    /// (0 m128 aligned, 1 m128, 2 m64, 3 m32, 4 m16; scalars zero-extended), as Sse.Load reads it.
    /// </summary>
    private void SseLoad(int i, int width, Label refuse)
    {
        Ea(i);
        if (width <= 1)
        {
            if (width == 0) Misaligned(refuse);
            Probe(_tlbR, 4, refuse);
            HostAddr();
            _il.Emit(OpCodes.Ldobj, V128);
        }
        else
        {
            Read(i, ScalarLog(width));
            _il.Emit(OpCodes.Ldloc, _v);
            _il.Emit(OpCodes.Call, CreateScalarM);
            _il.Emit(OpCodes.Call, AsByteM);
        }
        _il.Emit(OpCodes.Stloc, _xv!);
    }

    private static int ScalarLog(int width) => width switch { 2 => 3, 3 => 2, _ => 1 };

    /// <summary>A 16-byte aligned access at va that is not aligned goes to the interpreter (#GP).</summary>
    private void Misaligned(Label refuse)
    {
        _il.Emit(OpCodes.Ldloc, _va);
        _il.Emit(OpCodes.Ldc_I8, 15L);
        _il.Emit(OpCodes.And);
        _il.Emit(OpCodes.Ldc_I8, 0L);
        _il.Emit(OpCodes.Bne_Un, refuse);
    }

    /// <summary>Pushes the address of XMM register <paramref name="r"/> in the CpuState.</summary>
    private void XmmAddr(int r)
    {
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldc_I4, StateLayout.Xmm + 16 * r);
        _il.Emit(OpCodes.Add);
    }
}
