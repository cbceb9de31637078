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
    }

    [Fact]
    public void TryGet_HandlersNotCompiled_AreNotFound()
    {
        Assert.False(HandlerTable.TryGet((nint)Control.BailOutHandler, out _));
        Assert.False(HandlerTable.TryGet((nint)(delegate*<CpuState*, Op*, Op*>)&Alu.RR<AdcOp, S64>, out _));
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
        TlbEntry e;
        Assert.Equal((int)((byte*)&e.Code - (byte*)&e), StateLayout.EntryCode);
        Assert.Equal(32, StateLayout.EntrySize);
    }
}
