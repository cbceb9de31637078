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
            case CKind.Not: case CKind.Neg: case CKind.Inc: case CKind.Dec: EmitUnary(i, info); return false;
            case CKind.Imul:
                if (info.Form == CForm.RM) { Ea(i); Read(i, lg); EmitImul(i, lg, () => _il.Emit(OpCodes.Ldloc, _v)); }
                else { int r2 = op.R2; EmitImul(i, lg, () => LdRegWide(r2, lg)); }
                return false;
            case CKind.ZxR: LdReg(op.R2, info.SrcLog); StReg(op.R, lg); return false;
            case CKind.Cdqe: LdReg(0, 2); SignExtend(2); StReg(0, 3); return false;
            case CKind.Cdq: LdReg(0, 2); SignExtend(2); _il.Emit(OpCodes.Ldc_I4, 63); _il.Emit(OpCodes.Shr); StReg(2, 2); return false;
            case CKind.Cqo: LdReg(0, 3); _il.Emit(OpCodes.Ldc_I4, 63); _il.Emit(OpCodes.Shr); StReg(2, 3); return false;
            case CKind.Push: EmitPush(i); return false;
            case CKind.Pop: EmitPop(i); return false;
            case CKind.Cmov: EmitCmov(i, info); return false;
            case CKind.Set: EmitSet(i, info); return false;
            case CKind.Shift: EmitShift(i, lg); return false;
            case CKind.SseV2: case CKind.SseLoad: case CKind.SseStore: case CKind.GprToXmm: case CKind.XmmToGpr:
                EmitSse(i, info);
                return false;
            case CKind.Div: EmitDiv(i, info); return false;
            case CKind.Jcc: EmitJcc(i, info.Cc); return true;
            case CKind.Jmp:
            {
                long t = op.Disp;
                EmitEdge(i, (ulong)t);
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
        bool writes = info.Alu is not (CAlu.Cmp or CAlu.Test);
        var d = _d;
        var x = _x;
        switch (info.Form)
        {
            // Register operands wide: AluResult truncates the result and the flags' operands.
            case CForm.RR: LdRegWide(op.R, lg); _il.Emit(OpCodes.Stloc, d); LdRegWide(op.R2, lg); _il.Emit(OpCodes.Stloc, x); break;
            case CForm.RI: LdRegWide(op.R, lg); _il.Emit(OpCodes.Stloc, d); PushImm(op.Imm, lg); _il.Emit(OpCodes.Stloc, x); break;
            case CForm.RM: Ea(i); Read(i, lg); LdRegWide(op.R, lg); _il.Emit(OpCodes.Stloc, d); _il.Emit(OpCodes.Ldloc, _v); _il.Emit(OpCodes.Stloc, x); break;
            default:
                Ea(i);
                if (info.Form == CForm.MR) LdReg(op.R, lg); else PushImm(op.Imm, lg);
                _il.Emit(OpCodes.Stloc, x);
                if (writes)
                {
                    // Read-modify-write: d is read, the result written, through the write TLB.
                    var alu = info.Alu;
                    Rmw(i, lg, () => { AluResult(alu, lg); _il.Emit(OpCodes.Ldloc, _fRes); });
                    return;
                }
                Read(i, lg);
                _il.Emit(OpCodes.Ldloc, _v);
                _il.Emit(OpCodes.Stloc, d);
                break;
        }
        AluResult(info.Alu, lg);
        if (writes)
        {
            _il.Emit(OpCodes.Ldloc, _fRes);
            StReg(op.R, lg);
        }
    }

    /// <summary>
    /// The ALU operation on _d and _x (2^lg-byte values, with anything above them: only their low
    /// 2^lg bytes count): the result in _fRes, the lazy flags in the flag locals as Flags.Set /
    /// SetLogic store them, zero-extended (adc/sbb: the carry in in _fAux, read from the flags
    /// before them).
    /// </summary>
    private void AluResult(CAlu alu, int lg)
    {
        bool carry = alu is CAlu.Adc or CAlu.Sbb;
        if (carry) { Condition(2); _il.Emit(OpCodes.Conv_U8); _il.Emit(OpCodes.Stloc, _cin); }
        _il.Emit(OpCodes.Ldloc, _d);
        _il.Emit(OpCodes.Ldloc, _x);
        int kind;
        switch (alu)
        {
            case CAlu.Add: _il.Emit(OpCodes.Add); kind = Flags.Add; break;
            case CAlu.Adc: _il.Emit(OpCodes.Add); _il.Emit(OpCodes.Ldloc, _cin); _il.Emit(OpCodes.Add); kind = Flags.Adc; break;
            case CAlu.Sub: case CAlu.Cmp: _il.Emit(OpCodes.Sub); kind = Flags.Sub; break;
            case CAlu.Sbb: _il.Emit(OpCodes.Sub); _il.Emit(OpCodes.Ldloc, _cin); _il.Emit(OpCodes.Sub); kind = Flags.Sbb; break;
            case CAlu.And: case CAlu.Test: _il.Emit(OpCodes.And); kind = Flags.Logic; break;
            case CAlu.Or: _il.Emit(OpCodes.Or); kind = Flags.Logic; break;
            default: _il.Emit(OpCodes.Xor); kind = Flags.Logic; break;
        }
        Truncate(lg);
        _il.Emit(OpCodes.Stloc, _fRes);
        if (kind != Flags.Logic)
        {
            _il.Emit(OpCodes.Ldloc, _d);
            Truncate(lg);
            _il.Emit(OpCodes.Stloc, _fDst);
            _il.Emit(OpCodes.Ldloc, _x);
            Truncate(lg);
            _il.Emit(OpCodes.Stloc, _fSrc);
        }
        if (carry)
        {
            _il.Emit(OpCodes.Ldloc, _cin);
            _il.Emit(OpCodes.Stloc, _fAux);
        }
        _pending = kind << 2 | lg;
    }

    /// <summary>not, neg, inc, dec of a register or (read-modify-write) of memory.</summary>
    private void EmitUnary(int i, OpInfo info)
    {
        int lg = info.Log, r = _snap[i].R;
        var kind = info.Kind;
        void Result()
        {
            if (kind == CKind.Not) { _il.Emit(OpCodes.Ldloc, _d); _il.Emit(OpCodes.Not); Truncate(lg); return; }
            UnaryResult(kind, lg);
            _il.Emit(OpCodes.Ldloc, _fRes);
        }
        if (info.Form == CForm.MI)
        {
            Ea(i);
            Rmw(i, lg, Result);
            return;
        }
        LdReg(r, lg);
        _il.Emit(OpCodes.Stloc, _d);
        Result();
        StReg(r, lg);
    }

    /// <summary>neg, inc, dec of _d: result in _fRes and the lazy flags as the interpreter stores them.</summary>
    private void UnaryResult(CKind kind, int lg)
    {
        if (kind == CKind.Neg)
        {
            // Flags as sub 0, d: LDst 0, LSrc d.
            _il.Emit(OpCodes.Ldc_I8, 0L);
            _il.Emit(OpCodes.Ldloc, _d);
            _il.Emit(OpCodes.Sub);
            Truncate(lg);
            _il.Emit(OpCodes.Stloc, _fRes);
            _il.Emit(OpCodes.Ldloc, _d);
            _il.Emit(OpCodes.Stloc, _fSrc);
            _il.Emit(OpCodes.Ldc_I8, 0L);
            _il.Emit(OpCodes.Stloc, _fDst);
            _pending = Flags.Sub << 2 | lg;
            return;
        }
        // inc/dec keep CF: it is read from the flags before them into LAux.
        Condition(2);
        _il.Emit(OpCodes.Conv_U8);
        _il.Emit(OpCodes.Stloc, _cin);
        _il.Emit(OpCodes.Ldloc, _d);
        _il.Emit(OpCodes.Ldc_I8, 1L);
        _il.Emit(kind == CKind.Inc ? OpCodes.Add : OpCodes.Sub);
        Truncate(lg);
        _il.Emit(OpCodes.Stloc, _fRes);
        _il.Emit(OpCodes.Ldloc, _d);
        _il.Emit(OpCodes.Stloc, _fDst);
        _il.Emit(OpCodes.Ldc_I8, 1L);
        _il.Emit(OpCodes.Stloc, _fSrc);
        _il.Emit(OpCodes.Ldloc, _cin);
        _il.Emit(OpCodes.Stloc, _fAux);
        _pending = (kind == CKind.Inc ? Flags.Inc : Flags.Dec) << 2 | lg;
    }

    /// <summary>push r64: the write first (RSP unchanged when it is handed to the interpreter), then RSP.</summary>
    private void EmitPush(int i)
    {
        int r = _snap[i].R;
        LdReg(4, 3);
        _il.Emit(OpCodes.Ldc_I8, 8L);
        _il.Emit(OpCodes.Sub);
        _il.Emit(OpCodes.Stloc, _va);
        Write(i, 3, () => LdReg(r, 3));   // push rsp pushes the old value
        _il.Emit(OpCodes.Ldloc, _va);
        StReg(4, 3);
    }

    /// <summary>pop r64: read, RSP += 8, then the register (pop rsp leaves the value read).</summary>
    private void EmitPop(int i)
    {
        LdReg(4, 3);
        _il.Emit(OpCodes.Stloc, _va);
        Read(i, 3);
        LdReg(4, 3);
        _il.Emit(OpCodes.Ldc_I8, 8L);
        _il.Emit(OpCodes.Add);
        StReg(4, 3);
        _il.Emit(OpCodes.Ldloc, _v);
        StReg(_snap[i].R, 3);
    }

    /// <summary>cmovcc: the destination is written whatever the condition (a 32-bit one is zero-extended); a memory source is always read.</summary>
    private void EmitCmov(int i, OpInfo info)
    {
        ref Op op = ref _snap[i];
        int lg = info.Log, r = op.R, r2 = op.R2;
        bool mem = info.Form == CForm.RM;
        if (mem) { Ea(i); Read(i, lg); }
        var no = _il.DefineLabel();
        var done = _il.DefineLabel();
        Condition(op.X);
        _il.Emit(OpCodes.Brfalse, no);
        if (mem) _il.Emit(OpCodes.Ldloc, _v); else LdReg(r2, lg);
        StReg(r, lg);
        _il.Emit(OpCodes.Br, done);
        _il.MarkLabel(no);
        LdReg(r, lg);
        StReg(r, lg);
        _il.MarkLabel(done);
    }

    /// <summary>setcc r8 / m8.</summary>
    private void EmitSet(int i, OpInfo info)
    {
        ref Op op = ref _snap[i];
        Condition(op.X);
        _il.Emit(OpCodes.Conv_U8);
        _il.Emit(OpCodes.Stloc, _cin);
        if (info.Form == CForm.MI)
        {
            Ea(i);
            Write(i, 0, () => _il.Emit(OpCodes.Ldloc, _cin));
        }
        else
        {
            _il.Emit(OpCodes.Ldloc, _cin);
            StReg(op.R, 0);
        }
    }

    /// <summary>imul r, r/m[, imm]: the truncated product, CF = OF = the signed product did not fit (as Imul2R).</summary>
    private void EmitImul(int i, int lg, Action source)
    {
        ref Op op = ref _snap[i];
        if (op.X == 1) { _il.Emit(OpCodes.Ldc_I8, (long)op.Imm); Truncate(lg); } else LdRegWide(op.R, lg);
        SignExtend(lg);
        source();
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
        var d = _d;
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
        var cf = _cf;
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
        if (!inline && k != 0 && test is 1 or 2 or 4)
        {
            // Any other known kind: ZF and SF from the result, CF as Flags.Compute has it.
            ResultCondition(k, lg, test);
            if ((cc & 1) != 0) { _il.Emit(OpCodes.Ldc_I4_0); _il.Emit(OpCodes.Ceq); }
            return;
        }
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

    /// <summary>CF (test 1), ZF (2) or SF (4) of lazy kind <paramref name="k"/> held in the flag locals, as 1 or 0.</summary>
    private void ResultCondition(int k, int lg, int test)
    {
        void L(LocalBuilder l) => _il.Emit(OpCodes.Ldloc, l);
        if (test == 2) { L(_fRes); _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Ceq); return; }
        if (test == 4) { L(_fRes); SignExtend(lg); _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Clt); return; }
        switch (k)
        {
            case Flags.Add: L(_fRes); L(_fDst); _il.Emit(OpCodes.Clt_Un); break;
            case Flags.Inc: case Flags.Dec: L(_fAux); _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Cgt_Un); break;
            case Flags.ResCO: L(_fAux); _il.Emit(OpCodes.Ldc_I8, 1L); _il.Emit(OpCodes.And); _il.Emit(OpCodes.Conv_I4); break;
            case Flags.Adc:
                // aux ? res <= dst : res < dst  ==  res < dst + (aux != 0) without overflow: (res < dst) | (aux & (res == dst))
                L(_fRes); L(_fDst); _il.Emit(OpCodes.Clt_Un);
                L(_fRes); L(_fDst); _il.Emit(OpCodes.Ceq);
                L(_fAux); _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Cgt_Un);
                _il.Emit(OpCodes.And); _il.Emit(OpCodes.Or);
                break;
            default: // Sbb: aux ? dst <= src : dst < src
                L(_fDst); L(_fSrc); _il.Emit(OpCodes.Clt_Un);
                L(_fDst); L(_fSrc); _il.Emit(OpCodes.Ceq);
                L(_fAux); _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Cgt_Un);
                _il.Emit(OpCodes.And); _il.Emit(OpCodes.Or);
                break;
        }
    }
}
