using ToyVmm.Cpu;
using ToyVmm.Cpu.Ops;
using ToyVmm.Cpu.Tier;
using Xunit;

namespace ToyVmm.Tests.Cpu.Tier;

public sealed unsafe class HandlerTableTests
{
    [Fact]
    public void TryGet_AddressesTheBindersStore_AreFound()
    {
        // The binders store &Method; the table is built by reflection: the two must agree.
        Assert.True(HandlerTable.TryGet((nint)(delegate*<CpuState*, Op*, Op*>)&Alu.RR<AddOp, S64>, out var add));
        Assert.Equal(CKind.Alu, add.Kind);
        Assert.Equal(CAlu.Add, add.Alu);
        Assert.Equal(3, add.Log);
        Assert.True(HandlerTable.TryGet((nint)(delegate*<CpuState*, Op*, Op*>)&Control.Jcc<Cl>, out var jl));
        Assert.Equal(CKind.Jcc, jl.Kind);
        Assert.Equal(12, jl.Cc);
        Assert.True(HandlerTable.TryGet((nint)(delegate*<CpuState*, Op*, Op*>)&Fused.RM<FCmp, S32, Ce>, out var fused));
        Assert.Equal(CForm.RM, fused.Form);
        Assert.Equal(CAlu.Cmp, fused.Alu);
        Assert.True(HandlerTable.TryGet((nint)(delegate*<CpuState*, Op*, Op*>)&Alu.MI<SbbOp, S32>, out var sbb));
        Assert.Equal((CKind.Alu, CAlu.Sbb, CForm.MI), (sbb.Kind, sbb.Alu, sbb.Form));
        Assert.True(HandlerTable.TryGet((nint)(delegate*<CpuState*, Op*, Op*>)&Unary.M<DecOp, S16>, out var dec));
        Assert.Equal((CKind.Dec, CForm.MI, 1), (dec.Kind, dec.Form, dec.Log));
        Assert.True(HandlerTable.TryGet((nint)(delegate*<CpuState*, Op*, Op*>)&Mov.CmovM<S64>, out var cmov));
        Assert.Equal((CKind.Cmov, CForm.RM), (cmov.Kind, cmov.Form));
        Assert.True(HandlerTable.TryGet((nint)(delegate*<CpuState*, Op*, Op*>)&Stack.PopR, out var pop));
        Assert.Equal(CKind.Pop, pop.Kind);
        Assert.True(HandlerTable.TryGet((nint)(delegate*<CpuState*, Op*, Op*>)&Mov.ZxR<S32, S8>, out var zx));
        Assert.Equal((CKind.ZxR, 2, 0), (zx.Kind, zx.Log, zx.SrcLog));
    }

    [Fact]
    public void TryGet_HandlersNotCompiled_AreNotFound()
    {
        Assert.False(HandlerTable.TryGet((nint)Control.BailOutHandler, out _));
        Assert.False(HandlerTable.TryGet((nint)(delegate*<CpuState*, Op*, Op*>)&MulDiv.Div<S8>, out _));
        Assert.False(HandlerTable.TryGet((nint)(delegate*<CpuState*, Op*, Op*>)&Unary.LockM<IncOp, S32>, out _));
        Assert.False(HandlerTable.TryGet((nint)(delegate*<CpuState*, Op*, Op*>)&Alu.LockMR<AddOp, S64>, out _));
    }

    [Fact]
    public void StateLayout_Offsets_MatchTheFields()
    {
        CpuState st;
        byte* p = (byte*)&st;
        Assert.Equal((int)((byte*)&st.Regs[0] - p), StateLayout.Regs);
        Assert.Equal((int)((byte*)&st.LKind - p), StateLayout.LKind);
        Assert.Equal((int)((byte*)&st.CurOp - p), StateLayout.CurOp);
        Assert.Equal((int)((byte*)&st.TlbWrite - p), StateLayout.TlbWrite);
        Assert.Equal((int)((byte*)&st.SegBase[0] - p), StateLayout.SegBase);
        Assert.Equal((int)((byte*)&st.CurBlock - p), StateLayout.CurBlock);
        Assert.Equal((int)((byte*)&st.BlockVa - p), StateLayout.BlockVa);
        Assert.Equal((int)((byte*)&st.InstructionLimit - p), StateLayout.InstructionLimit);
        Block blk;
        Assert.Equal((int)((byte*)&blk.Seq - (byte*)&blk), StateLayout.BlockSeq);
        TlbEntry e;
        Assert.Equal((int)((byte*)&e.Code - (byte*)&e), StateLayout.EntryCode);
        Assert.Equal(32, StateLayout.EntrySize);
    }
}
