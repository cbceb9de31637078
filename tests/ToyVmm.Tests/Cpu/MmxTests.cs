using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// The MMX forms' faults, which the differential tests cannot provoke natively: CR0.EM and CR0.TS,
/// a pending unmasked x87 exception (#MF), and a faulting memory operand, each leaving the x87
/// state (TOP, tags, registers) as it was. Results and the x87 transition are compared with the
/// host CPU in Differential/Catalog.Mmx.cs, on both tiers.
/// </summary>
public class MmxTests
{
    private const ushort Top5 = 5 << 11;

    private static void X87Setup(Vcpu v, ushort fcw = 0x37F, ushort fsw = Top5)
    {
        v.X87Control = fcw;
        v.X87Status = fsw;
        v.X87AbridgedTag = 0x21;
        for (int i = 0; i < 8; i++) v.SetX87Register(i, 0x1111_1111_1111_1111UL * (ulong)(i + 1), (ushort)(0x4000 + i));
    }

    private static void AssertX87Untouched(Vcpu v, ushort fsw = Top5)
    {
        Assert.Equal(fsw, v.X87Status);
        Assert.Equal(0x21, v.X87AbridgedTag);
        for (int i = 0; i < 8; i++)
            Assert.Equal((0x1111_1111_1111_1111UL * (ulong)(i + 1), (ushort)(0x4000 + i)), v.GetX87Register(i));
    }

    [Theory]
    [InlineData(0x4UL, "#UD")]   // CR0.EM
    [InlineData(0x8UL, "#NM")]   // CR0.TS
    public void Paddb_Cr0EmOrTs_FaultsWithX87StateUnchanged(ulong cr0Bit, string fault)
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a => { a.paddb(mm0, mm1); a.hlt(); }, setup: v => { X87Setup(v); v.Cr0 |= cr0Bit; });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains(fault, exit.Message);
        AssertX87Untouched(cpu);
    }

    [Fact]
    public void Movq2dq_Cr4WithoutOsfxsr_RaisesUd()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a => { a.movq2dq(xmm3, mm2); a.hlt(); }, setup: v => { X87Setup(v); v.Cr4 &= ~0x200UL; });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#UD", exit.Message);
        AssertX87Untouched(cpu);
    }

    [Fact]
    public void Movq_PendingUnmaskedX87Exception_RaisesMf()
    {
        // FSW.IE set with FCW.IM clear: an unmasked invalid-operation exception is pending.
        using var f = new CpuFixture();
        const ushort fsw = Top5 | 0x81;
        var (exit, cpu) = f.Run(a => { a.movq(mm3, rax); a.hlt(); }, setup: v => X87Setup(v, fcw: 0x37E, fsw: fsw));
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#MF", exit.Message);
        AssertX87Untouched(cpu, fsw);
    }

    [Fact]
    public void Movq_MaskedX87ExceptionFlag_RunsAndMakesTheTransition()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a => { a.mov(rax, 0x0123_4567_89AB_CDEF); a.movq(mm3, rax); a.hlt(); }, setup: v => X87Setup(v, fcw: 0x37F, fsw: Top5 | 0x01));
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0x01, cpu.X87Status);        // TOP 0, the sticky flag kept
        Assert.Equal(0xFF, cpu.X87AbridgedTag);
        Assert.Equal((0x0123_4567_89AB_CDEFUL, (ushort)0xFFFF), cpu.GetX87Register(3));   // ST(3) is MM3 now that TOP is 0
    }

    [Fact]
    public void PaddbFromMemory_GeneralProtection_LeavesX87StateUnchanged()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a => { a.mov(rax, 0x8000_0000_0000UL); a.paddb(mm0, __qword_ptr[rax]); a.hlt(); }, setup: v => X87Setup(v));
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#GP", exit.Message);
        AssertX87Untouched(cpu);
    }

    [Fact]
    public void Cvtps2pi_UnmaskedInvalid_RaisesXmAndLeavesMmAndX87Unchanged()
    {
        using var f = new CpuFixture();
        f.W64(CpuFixture.DataBase, 0x7FC0_0000_3F80_0000);   // 1.0f, NaN
        f.W64(CpuFixture.DataBase + 8, 0x1F00);              // MXCSR with IM clear
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rax, CpuFixture.DataBase);
            a.ldmxcsr(__dword_ptr[rax + 8]);
            a.cvtps2pi(mm2, __qword_ptr[rax]);
            a.hlt();
        }, setup: v => X87Setup(v));
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#XM", exit.Message);
        AssertX87Untouched(cpu);
        Assert.Equal(0x1F01u, cpu.Mxcsr);
    }
}
