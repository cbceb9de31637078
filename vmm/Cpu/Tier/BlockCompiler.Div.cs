using System.Reflection.Emit;

namespace ToyVmm.Cpu.Tier;

// div and idiv of 32 and 64 bits compiled inline in the common case: the high half of the
// dividend (RDX/EDX) is zero, or for idiv the sign extension of the low half (as after cqo/cdq),
// so the host's 64-bit division gives the quotient and remainder, and the quotient fits. A zero
// divisor, the one signed overflow (MIN / -1) and a true double-width dividend hand the
// instruction to the interpreter before any of it has happened: it raises #DE or divides the
// 128-bit dividend. The flags are undefined after div: the lazy record is left as it is, as the
// interpreter leaves it.
internal sealed unsafe partial class BlockCompiler
{
    private void EmitDiv(int i, OpInfo info)
    {
        ref Op op = ref _snap[i];
        int lg = info.Log;
        bool signed = info.Cc == 1;
        var refuse = _il.DefineLabel();
        HandOverAt(refuse, i);
        // _x = the divisor, as wide as the operand (sign-extended to 64 bits for idiv)
        if (op.Y == 0) LdReg(op.R2, lg);
        else { Ea(i); Read(i, lg); _il.Emit(OpCodes.Ldloc, _v); }
        if (signed) SignExtend(lg);
        _il.Emit(OpCodes.Stloc, _x);
        _il.Emit(OpCodes.Ldloc, _x);
        _il.Emit(OpCodes.Brfalse, refuse);
        // _d = the low half of the dividend (sign-extended for idiv); the high half must be its extension
        LdReg(0, lg);
        if (signed) SignExtend(lg);
        _il.Emit(OpCodes.Stloc, _d);
        LdReg(2, lg);
        if (signed)
        {
            // high == low >> (bits - 1), arithmetic, truncated to the operand size
            _il.Emit(OpCodes.Ldloc, _d);
            _il.Emit(OpCodes.Ldc_I4, 63);
            _il.Emit(OpCodes.Shr);
            Truncate(lg);
            _il.Emit(OpCodes.Bne_Un, refuse);
            // MIN / -1 overflows
            var fine = _il.DefineLabel();
            _il.Emit(OpCodes.Ldloc, _x);
            _il.Emit(OpCodes.Ldc_I8, -1L);
            _il.Emit(OpCodes.Bne_Un, fine);
            _il.Emit(OpCodes.Ldloc, _d);
            _il.Emit(OpCodes.Ldc_I8, lg == 3 ? long.MinValue : int.MinValue);
            _il.Emit(OpCodes.Beq, refuse);
            _il.MarkLabel(fine);
        }
        else _il.Emit(OpCodes.Brtrue, refuse);
        // remainder first (into _v), then the quotient into RAX, the remainder into RDX
        _il.Emit(OpCodes.Ldloc, _d);
        _il.Emit(OpCodes.Ldloc, _x);
        _il.Emit(signed ? OpCodes.Rem : OpCodes.Rem_Un);
        _il.Emit(OpCodes.Stloc, _v);
        _il.Emit(OpCodes.Ldloc, _d);
        _il.Emit(OpCodes.Ldloc, _x);
        _il.Emit(signed ? OpCodes.Div : OpCodes.Div_Un);
        StReg(0, lg);
        _il.Emit(OpCodes.Ldloc, _v);
        StReg(2, lg);
    }
}
