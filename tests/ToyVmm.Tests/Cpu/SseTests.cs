using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

public class SseTests
{
    private static UInt128 U(ulong hi, ulong lo) => new(hi, lo);

    [Fact]
    public void PackedInteger_AddCompareShuffleMask_MatchReference()
    {
        using var f = new CpuFixture();
        f.W64(CpuFixture.DataBase, 0x0000_0004_0000_0003);
        f.W64(CpuFixture.DataBase + 8, 0x0000_0002_0000_0001);
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rax, CpuFixture.DataBase);
            a.movdqa(xmm0, __xmmword_ptr[rax]);
            a.movdqa(xmm1, xmm0);
            a.paddd(xmm1, xmm0);                 // 6, 8, 2, 4 (low to high: 6 8 / 2 4)
            a.pshufd(xmm2, xmm1, 0x1B);          // reverse dwords
            a.pxor(xmm3, xmm3);
            a.pcmpeqd(xmm3, xmm3);               // all ones
            a.psrlq(xmm3, 32);                   // 0x00000000FFFFFFFF per qword
            a.pmovmskb(ecx, xmm3);
            a.movq(rdx, xmm1);
            a.movd(xmm4, edx);
            a.punpckldq(xmm4, xmm4);
            a.pslldq(xmm0, 4);
            a.movdqu(__xmmword_ptr[rax + 0x21], xmm2);   // unaligned store
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(U(0x0000_0004_0000_0002, 0x0000_0008_0000_0006), cpu.GetXmm(1));
        Assert.Equal(U(0x0000_0006_0000_0008, 0x0000_0002_0000_0004), cpu.GetXmm(2));
        Assert.Equal(U(0x0000_0000_FFFF_FFFF, 0x0000_0000_FFFF_FFFF), cpu.GetXmm(3));
        Assert.Equal(0x0F0FUL, cpu.GetGpr(Gpr.Rcx));
        Assert.Equal(0x0000_0008_0000_0006UL, cpu.GetGpr(Gpr.Rdx));
        Assert.Equal(U(0, 0x0000_0006_0000_0006), cpu.GetXmm(4));
        Assert.Equal(U(0x0000_0001_0000_0004, 0x0000_0003_0000_0000), cpu.GetXmm(0));
        Assert.Equal(0x0000_0002_0000_0004UL, BitConverter.ToUInt64(f.Read(CpuFixture.DataBase + 0x21, 8)));
    }

    [Fact]
    public void MovdqaUnalignedMemory_RaisesGp()
    {
        using var f = new CpuFixture();
        var (exit, _) = f.Run(a => { a.mov(rax, CpuFixture.DataBase + 8); a.movdqa(xmm0, __xmmword_ptr[rax]); });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#GP", exit.Message);
    }

    [Fact]
    public void ScalarDouble_ArithmeticConvertCompare_MatchHost()
    {
        using var f = new CpuFixture();
        f.W64(CpuFixture.DataBase, BitConverter.DoubleToUInt64Bits(2.5));
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rax, CpuFixture.DataBase);
            a.movsd(xmm0, __qword_ptr[rax]);     // 2.5
            a.mov(ecx, 3);
            a.cvtsi2sd(xmm1, ecx);               // 3.0
            a.mulsd(xmm1, xmm0);                 // 7.5
            a.addsd(xmm1, __qword_ptr[rax]);     // 10.0
            a.sqrtsd(xmm2, xmm1);
            a.divsd(xmm1, xmm0);                 // 4.0
            a.cvttsd2si(rdx, xmm1);              // 4
            a.ucomisd(xmm0, xmm1);               // 2.5 < 4: CF
            a.setb(bl);
            a.seta(bh);
            a.cvtsd2ss(xmm3, xmm0);
            a.cvtss2sd(xmm4, xmm3);
            a.movsd(__qword_ptr[rax + 8], xmm2);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(4UL, cpu.GetGpr(Gpr.Rdx));
        Assert.Equal(1UL, cpu.GetGpr(Gpr.Rbx) & 0xFFFF);
        Assert.Equal(Math.Sqrt(10.0), BitConverter.UInt64BitsToDouble(f.R64(CpuFixture.DataBase + 8)));
        Assert.Equal(2.5, BitConverter.UInt64BitsToDouble((ulong)cpu.GetXmm(4)));
    }

    [Fact]
    public void FxsaveFxrstor_RoundTripXmmAndMxcsr()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rax, CpuFixture.DataBase);
            a.mov(rcx, 0x1122334455667788);
            a.movq(xmm7, rcx);
            a.fxsave(__[rax]);
            a.pxor(xmm7, xmm7);
            a.fxrstor(__[rax]);
            a.movq(rdx, xmm7);
            a.stmxcsr(__dword_ptr[rax + 600]);
            a.mov(esi, __dword_ptr[rax + 600]);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0x1122334455667788UL, cpu.GetGpr(Gpr.Rdx));
        Assert.Equal(0x1F80UL, cpu.GetGpr(Gpr.Rsi));
        Assert.Equal(0x1122334455667788UL, f.R64(CpuFixture.DataBase + 160 + 7 * 16));
    }

    [Fact]
    public void SseWithCr0Ts_RaisesNm()
    {
        using var f = new CpuFixture();
        var (exit, _) = f.Run(a => { a.pxor(xmm0, xmm0); }, setup: v => v.Cr0 |= 8);
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#NM", exit.Message);
    }
}
