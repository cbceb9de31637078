using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// MXCSR in the interpreter: the flags a division sets, rounding modes, an unmasked exception.
/// (The differential tests compare MXCSR with the host after every SSE case.)
/// </summary>
public class MxcsrTests
{
    private static (VcpuExit Exit, Vcpu Cpu, CpuFixture F) Run(uint mxcsr, Action<Assembler> body)
    {
        var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(__dword_ptr[CpuFixture.DataBase], mxcsr);
            a.ldmxcsr(__dword_ptr[CpuFixture.DataBase]);
            body(a);
            a.stmxcsr(__dword_ptr[CpuFixture.DataBase + 4]);
            a.hlt();
        });
        return (exit, cpu, f);
    }

    private static void LoadDouble(Assembler a, AssemblerRegisterXMM x, double v)
    {
        a.mov(rax, BitConverter.DoubleToInt64Bits(v));
        a.movq(x, rax);
    }

    [Fact]
    public void Divsd_OneByTen_SetsPrecisionAndStmxcsrReads1FA0()
    {
        var (exit, cpu, f) = Run(0x1F80, a => { LoadDouble(a, xmm0, 1.0); LoadDouble(a, xmm1, 10.0); a.divsd(xmm0, xmm1); });
        using (f)
        {
            Assert.Equal(VcpuExitKind.Halted, exit.Kind);
            Assert.Equal(0x1FA0UL, f.R64(CpuFixture.DataBase + 4) & 0xFFFF_FFFF);
            Assert.Equal(0.1, BitConverter.Int64BitsToDouble((long)(ulong)cpu.GetXmm(0)));
        }
    }

    [Theory]
    [InlineData(0x1F80u, 3L, -2L)]   // nearest: 2.5000001 -> 3, -1.5 -> -2 (even)
    [InlineData(0x3F80u, 2L, -2L)]   // down
    [InlineData(0x5F80u, 3L, -1L)]   // up
    [InlineData(0x7F80u, 2L, -1L)]   // toward zero
    public void Cvtsd2si_AfterLdmxcsr_RoundsAsTheRoundingControlSays(uint mxcsr, long pos, long neg)
    {
        var (exit, cpu, f) = Run(mxcsr, a =>
        {
            LoadDouble(a, xmm0, 2.5000001);
            a.cvtsd2si(rbx, xmm0);
            LoadDouble(a, xmm1, -1.5);
            a.cvtsd2si(rcx, xmm1);
        });
        using (f)
        {
            Assert.Equal(VcpuExitKind.Halted, exit.Kind);
            Assert.Equal(pos, (long)cpu.GetGpr(Gpr.Rbx));
            Assert.Equal(neg, (long)cpu.GetGpr(Gpr.Rcx));
            Assert.Equal(mxcsr | 0x20, (uint)f.R64(CpuFixture.DataBase + 4));
        }
    }

    [Fact]
    public void Divsd_ByZeroWithZeroDivideUnmasked_RaisesSimdExceptionAndKeepsTheDestination()
    {
        var (exit, cpu, f) = Run(0x1F80 & ~0x200u, a => { LoadDouble(a, xmm0, 1.0); a.xorpd(xmm1, xmm1); a.divsd(xmm0, xmm1); });
        using (f)
        {
            Assert.Equal(VcpuExitKind.VmError, exit.Kind);
            Assert.Contains("#XM", exit.Message);
            Assert.Equal(1.0, BitConverter.Int64BitsToDouble((long)(ulong)cpu.GetXmm(0)));
            Assert.Equal(0x1D84u, cpu.Mxcsr);   // ZE set, the mask as loaded
        }
    }
}
