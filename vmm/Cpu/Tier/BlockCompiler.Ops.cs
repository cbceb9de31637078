using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;

namespace ToyVmm.Cpu.Tier;

// The compilable ops (HandlerTable): ALU, neg, imul, shifts, and conditions read from the lazy flags.
internal sealed unsafe partial class BlockCompiler
{
    /// <summary>Emits op <paramref name="i"/>; true when it ended the compiled code (a control transfer).</summary>
    private bool EmitOp(int i)
    {
        var info = Info(i);
        ref Op op = ref _snap[i];
        int lg = info.Log;
        switch (info.Kind)
        {
            case CKind.Nop: return false;
            case CKind.MovRR: LdReg(op.R2, lg); StReg(op.R, lg); return false;
            case CKind.MovRI: PushImm(op.Imm, lg); StReg(op.R, lg); return false;
            case CKind.MovRI64: _il.Emit(OpCodes.Ldc_I8, op.Disp); StReg(op.R, 3); return false;
            case CKind.Lea: Ea(i); _il.Emit(OpCodes.Ldloc, _va); StReg(op.R, lg); return false;
            case CKind.MovRM: Ea(i); Read(i, lg); _il.Emit(OpCodes.Ldloc, _v); StReg(op.R, lg); return false;
            case CKind.ZxM: Ea(i); Read(i, info.SrcLog); _il.Emit(OpCodes.Ldloc, _v); StReg(op.R, lg); return false;
            case CKind.SxM: Ea(i); Read(i, info.SrcLog); _il.Emit(OpCodes.Ldloc, _v); SignExtend(info.SrcLog); StReg(op.R, lg); return false;
            case CKind.SxR: LdReg(op.R2, info.SrcLog); SignExtend(info.SrcLog); StReg(op.R, lg); return false;
            case CKind.MovMR:
            {
                int r = op.R;
                Ea(i);
                Write(i, lg, () => LdReg(r, lg));
                return false;
            }
            case CKind.MovMI:
            {
                int imm = op.Imm;
                Ea(i);
                Write(i, lg, () => PushImm(imm, lg));
                return false;
            }
            case CKind.Alu: EmitAlu(i, info); return false;
            case CKind.Not: LdReg(op.R, lg); _il.Emit(OpCodes.Not); StReg(op.R, lg); return false;
            case CKind.Neg: EmitNeg(i, lg); return false;
            case CKind.Imul: EmitImul(i, lg); return false;
            case CKind.Shift: EmitShift(i, lg); return false;
            case CKind.Jcc: EmitJcc(i, info.Cc); return true;
            case CKind.Jmp:
            {
                long t = op.Disp;
                if (_link != null && (ulong)t == _b->Va)
                {
                    var exit = _il.DefineLabel();
                    EmitSelfLoop(i, exit);
                    _il.MarkLabel(exit);
                }
                EmitTransfer(i, () => _il.Emit(OpCodes.Ldc_I8, t));
                return true;
            }
            case CKind.Call: EmitCall(i); return true;
            case CKind.Ret: EmitRet(i); return true;
        }
        throw new InvalidOperationException($"no emitter for {info.Kind}");
    }

    private void EmitAlu(int i, OpInfo info)
    {
        ref Op op = ref _snap[i];
        int lg = info.Log;
        var d = _il.DeclareLocal(typeof(ulong));
        var x = _il.DeclareLocal(typeof(ulong));
        switch (info.Form)
        {
            case CForm.RR: LdReg(op.R, lg); _il.Emit(OpCodes.Stloc, d); LdReg(op.R2, lg); _il.Emit(OpCodes.Stloc, x); break;
            case CForm.RI: LdReg(op.R, lg); _il.Emit(OpCodes.Stloc, d); PushImm(op.Imm, lg); _il.Emit(OpCodes.Stloc, x); break;
            case CForm.RM: Ea(i); Read(i, lg); LdReg(op.R, lg); _il.Emit(OpCodes.Stloc, d); _il.Emit(OpCodes.Ldloc, _v); _il.Emit(OpCodes.Stloc, x); break;
            case CForm.MR: Ea(i); Read(i, lg); _il.Emit(OpCodes.Ldloc, _v); _il.Emit(OpCodes.Stloc, d); LdReg(op.R, lg); _il.Emit(OpCodes.Stloc, x); break;
            case CForm.MI: Ea(i); Read(i, lg); _il.Emit(OpCodes.Ldloc, _v); _il.Emit(OpCodes.Stloc, d); PushImm(op.Imm, lg); _il.Emit(OpCodes.Stloc, x); break;
        }
        _il.Emit(OpCodes.Ldloc, d);
        _il.Emit(OpCodes.Ldloc, x);
        int kind;
        switch (info.Alu)
        {
            case CAlu.Add: _il.Emit(OpCodes.Add); kind = Flags.Add; break;
            case CAlu.Sub: case CAlu.Cmp: _il.Emit(OpCodes.Sub); kind = Flags.Sub; break;
            case CAlu.And: case CAlu.Test: _il.Emit(OpCodes.And); kind = Flags.Logic; break;
            case CAlu.Or: _il.Emit(OpCodes.Or); kind = Flags.Logic; break;
            default: _il.Emit(OpCodes.Xor); kind = Flags.Logic; break;
        }
        Truncate(lg);
        _il.Emit(OpCodes.Stloc, _fRes);
        if (kind != Flags.Logic)
        {
            _il.Emit(OpCodes.Ldloc, d);
            _il.Emit(OpCodes.Stloc, _fDst);
            _il.Emit(OpCodes.Ldloc, x);
            _il.Emit(OpCodes.Stloc, _fSrc);
        }
        _pending = kind << 2 | lg;
        if (info.Alu is not (CAlu.Cmp or CAlu.Test))
        {
            _il.Emit(OpCodes.Ldloc, _fRes);
            StReg(op.R, lg);
        }
    }

    private void EmitNeg(int i, int lg)
    {
        int r = _snap[i].R;
        // Flags as sub 0, d: LDst 0, LSrc d.
        LdReg(r, lg);
        _il.Emit(OpCodes.Stloc, _fSrc);
        _il.Emit(OpCodes.Ldc_I8, 0L);
        _il.Emit(OpCodes.Stloc, _fDst);
        _il.Emit(OpCodes.Ldc_I8, 0L);
        _il.Emit(OpCodes.Ldloc, _fSrc);
        _il.Emit(OpCodes.Sub);
        Truncate(lg);
        _il.Emit(OpCodes.Stloc, _fRes);
        _il.Emit(OpCodes.Ldloc, _fRes);
        StReg(r, lg);
        _pending = Flags.Sub << 2 | lg;
    }

    /// <summary>imul r, r[, imm]: the truncated product, CF = OF = the signed product did not fit (as Imul2R).</summary>
    private void EmitImul(int i, int lg)
    {
        ref Op op = ref _snap[i];
        if (op.X == 1) { _il.Emit(OpCodes.Ldc_I8, (long)op.Imm); Truncate(lg); } else LdReg(op.R, lg);
        SignExtend(lg);
        LdReg(op.R2, lg);
        SignExtend(lg);
        if (lg == 3)
        {
            _il.Emit(OpCodes.Ldloca, _fAux);
            _il.Emit(OpCodes.Call, ImulM);   // low 64 bits; _fAux = 3 when the product overflowed
        }
        else
        {
            _il.Emit(OpCodes.Mul);
            _il.Emit(OpCodes.Stloc, _v);
            // overflow: the 64-bit product differs from its low part sign-extended
            _il.Emit(OpCodes.Ldloc, _v);
            SignExtend(lg);
            _il.Emit(OpCodes.Ldloc, _v);
            _il.Emit(OpCodes.Ceq);
            _il.Emit(OpCodes.Ldc_I4_0);
            _il.Emit(OpCodes.Ceq);
            _il.Emit(OpCodes.Conv_U8);
            _il.Emit(OpCodes.Ldc_I4_3);
            _il.Emit(OpCodes.Conv_U8);
            _il.Emit(OpCodes.Mul);
            _il.Emit(OpCodes.Stloc, _fAux);
            _il.Emit(OpCodes.Ldloc, _v);
        }
        Truncate(lg);
        _il.Emit(OpCodes.Stloc, _fRes);
        _il.Emit(OpCodes.Ldloc, _fRes);
        StReg(op.R, lg);
        _pending = Flags.ResCO << 2 | lg;
    }

    /// <summary>shl/shr/sar r, imm with a nonzero count (as Shifts.Shift, cases 0..2).</summary>
    private void EmitShift(int i, int lg)
    {
        ref Op op = ref _snap[i];
        int bits = 8 << lg;
        int n = op.Imm & (lg == 3 ? 63 : 31);
        ulong sign = 1UL << (bits - 1);
        var d = _il.DeclareLocal(typeof(ulong));
        LdReg(op.R, lg);
        _il.Emit(OpCodes.Stloc, d);
        // result
        switch (op.X)
        {
            case 0: // shl: r = d << n (n < 64); cf = n <= bits && bit (bits - n) of d; of = msb(r) != cf
                _il.Emit(OpCodes.Ldloc, d); _il.Emit(OpCodes.Ldc_I4, n); _il.Emit(OpCodes.Shl); break;
            case 1: // shr: r = d >> n; cf = bit n-1 of d; of = msb(d)
                _il.Emit(OpCodes.Ldloc, d); _il.Emit(OpCodes.Ldc_I4, n); _il.Emit(OpCodes.Shr_Un); break;
            default: // sar: r = sx(d) >> n; cf = bit n-1 of sx(d); of = 0
                _il.Emit(OpCodes.Ldloc, d); SignExtend(lg); _il.Emit(OpCodes.Ldc_I4, n); _il.Emit(OpCodes.Shr); break;
        }
        Truncate(lg);
        _il.Emit(OpCodes.Stloc, _fRes);
        // CF into _fAux bit 0
        switch (op.X)
        {
            case 0:
                if (n <= bits)
                {
                    _il.Emit(OpCodes.Ldloc, d); _il.Emit(OpCodes.Ldc_I4, n - 1); _il.Emit(OpCodes.Shl);
                    _il.Emit(OpCodes.Ldc_I8, unchecked((long)sign)); _il.Emit(OpCodes.And);
                    _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Cgt_Un);
                }
                else _il.Emit(OpCodes.Ldc_I4_0);
                break;
            case 1:
                _il.Emit(OpCodes.Ldloc, d); _il.Emit(OpCodes.Ldc_I4, n - 1); _il.Emit(OpCodes.Shr_Un);
                _il.Emit(OpCodes.Ldc_I8, 1L); _il.Emit(OpCodes.And); _il.Emit(OpCodes.Conv_I4);
                break;
            default:
                _il.Emit(OpCodes.Ldloc, d); SignExtend(lg); _il.Emit(OpCodes.Ldc_I4, n - 1); _il.Emit(OpCodes.Shr);
                _il.Emit(OpCodes.Ldc_I8, 1L); _il.Emit(OpCodes.And); _il.Emit(OpCodes.Conv_I4);
                break;
        }
        var cf = _il.DeclareLocal(typeof(int));
        _il.Emit(OpCodes.Stloc, cf);
        // OF (0/1) on the stack
        switch (op.X)
        {
            case 0:
                _il.Emit(OpCodes.Ldloc, _fRes); _il.Emit(OpCodes.Ldc_I8, unchecked((long)sign)); _il.Emit(OpCodes.And);
                _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Cgt_Un);
                _il.Emit(OpCodes.Ldloc, cf); _il.Emit(OpCodes.Xor);
                break;
            case 1:
                _il.Emit(OpCodes.Ldloc, d); _il.Emit(OpCodes.Ldc_I8, unchecked((long)sign)); _il.Emit(OpCodes.And);
                _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Cgt_Un);
                break;
            default:
                _il.Emit(OpCodes.Ldc_I4_0);
                break;
        }
        _il.Emit(OpCodes.Ldc_I4_1);
        _il.Emit(OpCodes.Shl);
        _il.Emit(OpCodes.Ldloc, cf);
        _il.Emit(OpCodes.Or);
        _il.Emit(OpCodes.Conv_U8);
        _il.Emit(OpCodes.Stloc, _fAux);
        _il.Emit(OpCodes.Ldloc, _fRes);
        StReg(op.R, lg);
        _pending = Flags.ResCO << 2 | lg;
    }

    /// <summary>Pushes 1 or 0: condition <paramref name="cc"/> of the flags as they stand (stored first when a helper reads them).</summary>
    private void Condition(int cc)
    {
        int k = _pending >> 2, lg = _pending & 3;
        int test = cc >> 1;
        bool inline = (k == Flags.Sub && test is 1 or 2 or 3 or 4 or 6 or 7)
            || (k == Flags.Logic && test is 0 or 1 or 2 or 3 or 4 or 6 or 7);
        if (!inline)
        {
            SpillFlags(_pending);
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldc_I4, cc);
            _il.Emit(OpCodes.Call, CondM);
            return;
        }
        void Sx(LocalBuilder l) { _il.Emit(OpCodes.Ldloc, l); SignExtend(lg); }
        void Not() { _il.Emit(OpCodes.Ldc_I4_0); _il.Emit(OpCodes.Ceq); }
        if (k == Flags.Sub)
        {
            switch (test)
            {
                case 1: _il.Emit(OpCodes.Ldloc, _fDst); _il.Emit(OpCodes.Ldloc, _fSrc); _il.Emit(OpCodes.Clt_Un); break;
                case 2: _il.Emit(OpCodes.Ldloc, _fDst); _il.Emit(OpCodes.Ldloc, _fSrc); _il.Emit(OpCodes.Ceq); break;
                case 3: _il.Emit(OpCodes.Ldloc, _fDst); _il.Emit(OpCodes.Ldloc, _fSrc); _il.Emit(OpCodes.Cgt_Un); Not(); break;
                case 4: Sx(_fRes); _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Clt); break;
                case 6: Sx(_fDst); Sx(_fSrc); _il.Emit(OpCodes.Clt); break;
                default: Sx(_fDst); Sx(_fSrc); _il.Emit(OpCodes.Cgt); Not(); break;
            }
        }
        else
        {
            switch (test)
            {
                case 0: case 1: _il.Emit(OpCodes.Ldc_I4_0); break;
                case 2: case 3: _il.Emit(OpCodes.Ldloc, _fRes); _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Ceq); break;
                case 4: case 6: Sx(_fRes); _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Clt); break;
                default: Sx(_fRes); _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Cgt); Not(); break;
            }
        }
        if ((cc & 1) != 0) Not();
    }
}
