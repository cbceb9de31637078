using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;

namespace ToyVmm.Cpu.Tier;

// Leaving compiled code: the registers and lazy flags stored back, the hand-over of an op to
// the interpreter, and the shared tails every exit of a method jumps to.
internal sealed unsafe partial class BlockCompiler
{
    /// <summary>Registers and lazy flags back into the CpuState (before anything that can observe them).</summary>
    private void Spill(int pending, bool[] written)
    {
        for (int r = 0; r < 16; r++)
        {
            var l = _r[r];
            if (l != null && written[r]) StoreField(StateLayout.Regs + 8 * r, () => _il.Emit(OpCodes.Ldloc, l));
        }
        SpillFlags(pending);
    }

    /// <summary>The lazy flags held in locals back into the CpuState.</summary>
    private void SpillFlags(int pending)
    {
        if (pending == 0) return;
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldc_I4, StateLayout.LKind);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldc_I4, pending);
        _il.Emit(OpCodes.Stind_I4);
        StoreField(StateLayout.LRes, () => _il.Emit(OpCodes.Ldloc, _fRes));
        int kind = pending >> 2;
        if (kind is Flags.ResCO or Flags.Adc or Flags.Sbb or Flags.Inc or Flags.Dec)
            StoreField(StateLayout.LAux, () => _il.Emit(OpCodes.Ldloc, _fAux));
        if (kind is not (Flags.ResCO or Flags.Logic))
        {
            StoreField(StateLayout.LDst, () => _il.Emit(OpCodes.Ldloc, _fDst));
            StoreField(StateLayout.LSrc, () => _il.Emit(OpCodes.Ldloc, _fSrc));
        }
    }

    /// <summary>
    /// Out of line, at <paramref name="refused"/>: hand op <paramref name="i"/> to the interpreter
    /// with the lazy flags pending now (a fast path that refuses branches there before any of
    /// the op has happened).
    /// </summary>
    private void HandOverAt(Label refused, int i)
    {
        int pending = _pending;
        AddOutOfLine(() =>
        {
            _il.MarkLabel(refused);
            HandOver(i, pending);
        });
    }

    /// <summary>
    /// Leave the compiled code at op <paramref name="i"/>: the interpreter runs it and the rest of
    /// the block. The lazy flags are stored here; the registers, CurOp and the call are one shared
    /// tail per method (SharedTails), which keeps the IL, and so the JIT's time, small.
    /// </summary>
    private void HandOver(int i, int pending)
    {
        // The shared tail stores every register the method holds.
        Bump("insns compiled", i);
        if (TierProfile.On) Bump($"handover {(i < _region[_cur].N ? "write-refused" : "op")} at {_b->Va + _snap[i].RipOff:x} rest {_snap.Length - i}", 1);
        SpillFlags(pending);
        SetSite(i);
        if (i == 0)
        {
            // Op 0's slot holds this compiled code: run op 0's own handler. The vCPU entered
            // op 0 when it entered this code, so it completes op 0 as decoded, as the
            // interpreter completes a handler it has entered.
            PushPtr((nint)_snap[0].H);
        }
        else
        {
            PushPtr(OpAddr(i));
            _il.Emit(OpCodes.Ldind_I);   // the op's handler as it is now (the bail-out once invalidated)
        }
        _il.Emit(OpCodes.Stloc, _siteH);
        _handOverUsed = true;
        _il.Emit(OpCodes.Br, _handOverTail);
    }

    /// <summary>The op a shared tail stands at: _siteOp, and in a region _siteBlock.</summary>
    private void SetSite(int i)
    {
        PushPtr(OpAddr(i));
        _il.Emit(OpCodes.Stloc, _siteOp);
        if (_region.Count > 1)
        {
            PushPtr((nint)_b);
            _il.Emit(OpCodes.Stloc, _siteBlock);
        }
    }

    /// <summary>
    /// Registers back, then CurBlock, BlockVa and CurOp of the site (SetSite). Compiled accesses
    /// do not publish AccessVa, so AccessUnknown is published first: a vCPU seen at a plain mov
    /// op here is never taken as done by IsQuiescentFor (TlbShootdown.cs) on a stale address.
    /// A block end names its transfer op (jmp, jcc, call, ret), never judged by its address:
    /// it publishes nothing, as before the tail was shared.
    /// </summary>
    private void SpillAtSite(bool accessUnknown = true)
    {
        if (accessUnknown) StoreField(StateLayout.AccessVa, () => _il.Emit(OpCodes.Ldc_I8, unchecked((long)Vcpu.AccessUnknown)));
        if (_edges) StoreField(StateLayout.Retired, () => _il.Emit(OpCodes.Ldloc, _retired!));
        for (int r = 0; r < 16; r++)
        {
            var l = _r[r];
            if (l != null) StoreField(StateLayout.Regs + 8 * r, () => _il.Emit(OpCodes.Ldloc, l));
        }
        if (_region.Count > 1)
        {
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldc_I4, StateLayout.CurBlock);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Ldloc, _siteBlock);
            _il.Emit(OpCodes.Stind_I);
            StoreField(StateLayout.BlockVa, () =>
            {
                _il.Emit(OpCodes.Ldloc, _siteBlock);
                _il.Emit(OpCodes.Ldc_I4, StateLayout.BlockHeaderVa);
                _il.Emit(OpCodes.Add);
                _il.Emit(OpCodes.Ldind_I8);
            });
        }
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldc_I4, StateLayout.CurOp);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldloc, _siteOp);
        _il.Emit(OpCodes.Stind_I);
    }

    /// <summary>
    /// The shared tails, once per method after all other code: the hand-over (registers back, the
    /// op's handler called, its result returned), the slow read (registers back, the
    /// interpreter's ReadSlow, then back to the site that asked through a switch on _site), and
    /// in a region with edges the block end (registers back, RIP = _v, CurOp the transfer op,
    /// Exec.Chain from it, as the interpreter's transfer handlers end).
    /// </summary>
    private void SharedTails()
    {
        if (_chainUsed)
        {
            _il.MarkLabel(_chainTail);
            StoreField(StateLayout.Rip, () => _il.Emit(OpCodes.Ldloc, _v));
            SpillAtSite(accessUnknown: false);
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldloc, _siteOp);
            _il.Emit(OpCodes.Call, ChainM);
            _il.Emit(OpCodes.Ret);
        }
        if (_handOverUsed)
        {
            _il.MarkLabel(_handOverTail);
            SpillAtSite();
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldloc, _siteOp);
            _il.Emit(OpCodes.Ldloc, _siteH);
            _il.EmitCalli(OpCodes.Calli, CallingConventions.Standard, OpPtr, [StatePtr, OpPtr], null);
            _il.Emit(OpCodes.Ret);
        }
        if (_readReturns.Count > 0)
        {
            _il.MarkLabel(_readTail);
            SpillAtSite();
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldloc, _va);
            _il.Emit(OpCodes.Ldloc, _n);
            _il.Emit(OpCodes.Call, ReadSlowM);
            _il.Emit(OpCodes.Stloc, _v);
            StoreCurOp(-1);
            _il.Emit(OpCodes.Ldloc, _site);
            _il.EmitSwitch(_readReturns.ToArray());
            _il.Emit(OpCodes.Br, _readReturns[0]);
        }
    }
}
