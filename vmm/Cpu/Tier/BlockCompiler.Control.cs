using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;

namespace ToyVmm.Cpu.Tier;

// Control transfers that end a compiled block: jmp, jcc, call and ret, chaining as the interpreter does.
internal sealed unsafe partial class BlockCompiler
{
    /// <summary>Ends the block at control transfer op <paramref name="i"/>: RIP = the pushed target, then chain as the interpreter does.</summary>
    private void EmitTransfer(int i, Action target)
    {
        Bump("exit: chain", 1); Bump("insns compiled", i + 1);
        if (TierProfile.On) Bump($"exit: chain at {_b->Va + _snap[i].RipOff:x} ({Info(i).Kind}, region of {_region[0].B->Va:x})", 1);
        if (_edges)
        {
            // A region's exits share one tail (SharedTails): the registers it stores are all
            // the method holds anyway once an edge may have been taken, and the IL, so the
            // JIT's time, shrinks by a register spill per exit.
            SpillFlags(_pending);
            target();
            _il.Emit(OpCodes.Stloc, _v);
            SetSite(i);
            _chainUsed = true;
            _il.Emit(OpCodes.Br, _chainTail);
            return;
        }
        Spill(_pending, _written);
        StoreField(StateLayout.Rip, target);
        StoreCurOp(i);
        _il.Emit(OpCodes.Ldarg_0);
        PushPtr(OpAddr(i));
        _il.Emit(OpCodes.Call, ChainM);
        _il.Emit(OpCodes.Ret);
    }

    private void EmitJcc(int i, int cc)
    {
        ref Op op = ref _snap[i];
        long taken = op.Disp, fall = (long)NextRip(i);
        var yes = _il.DefineLabel();
        var join = _il.DefineLabel();
        Condition(cc);
        _il.Emit(OpCodes.Brtrue, yes);
        EmitEdge(i, (ulong)fall);
        _il.Emit(OpCodes.Ldc_I8, fall);
        _il.Emit(OpCodes.Stloc, _v);
        _il.Emit(OpCodes.Br, join);
        _il.MarkLabel(yes);
        EmitEdge(i, (ulong)taken);
        _il.Emit(OpCodes.Ldc_I8, taken);
        _il.Emit(OpCodes.Stloc, _v);
        _il.MarkLabel(join);
        EmitTransfer(i, () => _il.Emit(OpCodes.Ldloc, _v));
    }

    private void EmitCall(int i)
    {
        long target = _snap[i].Disp, ret = (long)NextRip(i);
        // push the return address (may fault: RSP unchanged then), then jump
        LdReg(4, 3);
        _il.Emit(OpCodes.Ldc_I8, 8L);
        _il.Emit(OpCodes.Sub);
        _il.Emit(OpCodes.Stloc, _va);
        Write(i, 3, () => _il.Emit(OpCodes.Ldc_I8, ret));
        _il.Emit(OpCodes.Ldloc, _va);
        _il.Emit(OpCodes.Stloc, _r[4]!);
        _written[4] = true;
        EmitEdge(i, (ulong)target);
        EmitTransfer(i, () => _il.Emit(OpCodes.Ldc_I8, target));
    }

    private void EmitRet(int i)
    {
        int extra = (ushort)_snap[i].Imm;
        LdReg(4, 3);
        _il.Emit(OpCodes.Stloc, _va);
        Read(i, 3);
        _il.Emit(OpCodes.Ldloc, _va);
        _il.Emit(OpCodes.Ldc_I8, 8L + extra);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Stloc, _r[4]!);
        _written[4] = true;
        EmitReturnEdges(i);
        EmitTransfer(i, () => _il.Emit(OpCodes.Ldloc, _v));
    }
}
