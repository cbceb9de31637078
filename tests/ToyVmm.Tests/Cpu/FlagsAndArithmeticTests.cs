using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

public class FlagsAndArithmeticTests
{
    private static readonly ulong[] Values = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
        0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, 0xFFFF_FFFF_FFFF_FFFF, 0x1234_5678_9ABC_DEF0];

    private static bool Expected(int cc, ulong a, ulong b, int bits)
    {
        ulong mask = bits == 64 ? ulong.MaxValue : (1UL << bits) - 1;
        a &= mask; b &= mask;
        ulong r = (a - b) & mask;
        int sh = 64 - bits;
        long sa = (long)(a << sh) >> sh, sb = (long)(b << sh) >> sh, sr = (long)(r << sh) >> sh;
        bool cf = a < b, zf = r == 0, sf = sr < 0;
        bool of = (sa < 0) != (sb < 0) && (sr < 0) != (sa < 0);
        bool pf = (System.Numerics.BitOperations.PopCount(r & 0xFF) & 1) == 0;
        bool v = (cc >> 1) switch
        {
            0 => of, 1 => cf, 2 => zf, 3 => cf || zf, 4 => sf, 5 => pf, 6 => sf != of, _ => zf || sf != of,
        };
        return v ^ ((cc & 1) != 0);
    }

    [Theory]
    [InlineData(8)]
    [InlineData(16)]
    [InlineData(32)]
    [InlineData(64)]
    public void Setcc_AfterCmp_MatchesReference(int bits)
    {
        using var f = new CpuFixture();
        var pairs = (from a in Values from b in Values select (a, b)).ToArray();
        var (exit, _) = f.Run(a =>
        {
            a.mov(rdi, CpuFixture.DataBase);
            foreach (var (x, y) in pairs)
            {
                a.mov(rax, x);
                a.mov(rbx, y);
                switch (bits)
                {
                    case 8: a.cmp(al, bl); break;
                    case 16: a.cmp(ax, bx); break;
                    case 32: a.cmp(eax, ebx); break;
                    default: a.cmp(rax, rbx); break;
                }
                a.seto(__byte_ptr[rdi]); a.setno(__byte_ptr[rdi + 1]); a.setb(__byte_ptr[rdi + 2]); a.setae(__byte_ptr[rdi + 3]);
                a.sete(__byte_ptr[rdi + 4]); a.setne(__byte_ptr[rdi + 5]); a.setbe(__byte_ptr[rdi + 6]); a.seta(__byte_ptr[rdi + 7]);
                a.sets(__byte_ptr[rdi + 8]); a.setns(__byte_ptr[rdi + 9]); a.setp(__byte_ptr[rdi + 10]); a.setnp(__byte_ptr[rdi + 11]);
                a.setl(__byte_ptr[rdi + 12]); a.setge(__byte_ptr[rdi + 13]); a.setle(__byte_ptr[rdi + 14]); a.setg(__byte_ptr[rdi + 15]);
                a.add(rdi, 16);
            }
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        var got = f.Read(CpuFixture.DataBase, pairs.Length * 16);
        for (int i = 0; i < pairs.Length; i++)
            for (int cc = 0; cc < 16; cc++)
                Assert.True(Expected(cc, pairs[i].a, pairs[i].b, bits) == (got[i * 16 + cc] == 1),
                    $"cc {cc} after cmp{bits} 0x{pairs[i].a:x}, 0x{pairs[i].b:x}");
    }

    [Fact]
    public void Jcc_AfterSubAndLogic_TakesTheRightBranches()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            var l1 = a.CreateLabel(); var l2 = a.CreateLabel(); var l3 = a.CreateLabel(); var bad = a.CreateLabel();
            a.mov(eax, -5);
            a.cmp(eax, 3);
            a.jge(bad);          // -5 >= 3 is false
            a.jb(bad);           // 0xFFFFFFFB < 3 unsigned is false
            a.test(eax, eax);
            a.jns(bad);
            a.jle(l1);
            a.jmp(bad);
            a.Label(ref l1);
            a.mov(ecx, 1);
            a.sub(ecx, 1);
            a.jnz(bad);
            a.jbe(l2);
            a.jmp(bad);
            a.Label(ref l2);
            a.mov(rdx, 0x7FFF_FFFF_FFFF_FFFF);
            a.add(rdx, 1);
            a.jno(bad);
            a.jo(l3);
            a.Label(ref bad);
            a.mov(r15, 0xBAD);
            a.hlt();
            a.Label(ref l3);
            a.mov(r15, 0x600D);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0x600DUL, cpu.GetGpr(Gpr.R15));
    }

    [Fact]
    public void AdcSbb_MultiPrecision_CarriesAcrossWords()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rax, ulong.MaxValue);
            a.mov(rdx, 1);
            a.add(rax, 1);          // CF = 1
            a.adc(rdx, 0);          // rdx = 2
            a.mov(rbx, 0);
            a.mov(rcx, 5);
            a.sub(rbx, 1);          // borrow
            a.sbb(rcx, 0);          // rcx = 4
            a.stc();
            a.mov(r8d, 10);
            a.adc(r8d, 10);         // 21
            a.inc(r9);              // inc keeps CF
            a.setc(r10b);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(2UL, cpu.GetGpr(Gpr.Rdx));
        Assert.Equal(0UL, cpu.GetGpr(Gpr.Rax));
        Assert.Equal(4UL, cpu.GetGpr(Gpr.Rcx));
        Assert.Equal(21UL, cpu.GetGpr(Gpr.R8));
        Assert.Equal(0UL, cpu.GetGpr(Gpr.R10));    // adc r8d left CF = 0
    }

    [Fact]
    public void MulDiv_AllForms_ComputeProductsAndQuotients()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rax, 0xFFFF_FFFF_FFFF_FFFF);
            a.mov(rbx, 3);
            a.mul(rbx);                 // rdx:rax = 3 * (2^64-1)
            a.mov(r8, rdx);
            a.mov(r9, rax);
            a.mov(rax, -7);
            a.mov(rcx, 2);
            a.cqo();
            a.idiv(rcx);                // -3 rem -1
            a.mov(r10, rax);
            a.mov(r11, rdx);
            a.mov(eax, 1000);
            a.imul(r12d, eax, -3);      // -3000
            a.imul(r13, rax, 1000);
            a.mov(ax, 1000);
            a.mov(cl, 7);
            a.div(cl);                  // al = 142, ah = 6
            a.movzx(r14d, ax);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(2UL, cpu.GetGpr(Gpr.R8));
        Assert.Equal(0xFFFF_FFFF_FFFF_FFFDUL, cpu.GetGpr(Gpr.R9));
        Assert.Equal(unchecked((ulong)-3L), cpu.GetGpr(Gpr.R10));
        Assert.Equal(unchecked((ulong)-1L), cpu.GetGpr(Gpr.R11));
        Assert.Equal(unchecked((ulong)(uint)-3000), cpu.GetGpr(Gpr.R12));
        Assert.Equal(1_000_000UL, cpu.GetGpr(Gpr.R13));
        Assert.Equal((6UL << 8) | 142, cpu.GetGpr(Gpr.R14));
    }

    [Fact]
    public void ShiftsRotatesAndBits_ProduceReferenceResults()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rax, 0x8000_0000_0000_0001);
            a.shl(rax, 1);              // 2, CF=1
            a.setc(bl);
            a.mov(ecx, 4);
            a.mov(rdx, -256);
            a.sar(rdx, cl);             // -16
            a.mov(esi, 0x80000000);
            a.shr(esi, 31);             // 1
            a.mov(edi, 0x12345678);
            a.rol(edi, 8);              // 0x34567812
            a.mov(r8, 0x0F);
            a.mov(r9, 0xF000_0000_0000_0000);
            a.shld(r8, r9, 4);          // 0xFF
            a.mov(r10, 0b1011000);
            a.bsf(r11, r10);            // 3
            a.bsr(r12, r10);            // 6
            a.popcnt(r13, r10);         // 3
            a.bts(r10, 0);              // 0b1011001, CF=0
            a.tzcnt(r14, r10);          // 0
            a.mov(r15d, 0);
            a.lzcnt(r15d, r15d);        // 32
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(2UL, cpu.GetGpr(Gpr.Rax));
        Assert.Equal(1UL, cpu.GetGpr(Gpr.Rbx) & 0xFF);
        Assert.Equal(unchecked((ulong)-16L), cpu.GetGpr(Gpr.Rdx));
        Assert.Equal(1UL, cpu.GetGpr(Gpr.Rsi));
        Assert.Equal(0x34567812UL, cpu.GetGpr(Gpr.Rdi));
        Assert.Equal(0xFFUL, cpu.GetGpr(Gpr.R8));
        Assert.Equal(3UL, cpu.GetGpr(Gpr.R11));
        Assert.Equal(6UL, cpu.GetGpr(Gpr.R12));
        Assert.Equal(3UL, cpu.GetGpr(Gpr.R13));
        Assert.Equal(0b1011001UL, cpu.GetGpr(Gpr.R10));
        Assert.Equal(0UL, cpu.GetGpr(Gpr.R14));
        Assert.Equal(32UL, cpu.GetGpr(Gpr.R15));
    }

    [Fact]
    public void Rflags_PushfPopf_RoundTripsArithmeticBits()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(eax, 0xFF);
            a.add(al, 1);               // ZF CF AF PF
            a.pushfq();
            a.pop(rbx);
            a.push(0x8D5);              // OF SF AF PF CF
            a.popfq();
            a.pushfq();
            a.pop(rcx);
            a.lahf();
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0x57UL, cpu.GetGpr(Gpr.Rbx) & 0x8D5 | (cpu.GetGpr(Gpr.Rbx) & 0x40) | 2);
        Assert.Equal(0x8D7UL, cpu.GetGpr(Gpr.Rcx));
        Assert.Equal(0xD7UL, (cpu.GetGpr(Gpr.Rax) >> 8) & 0xFF);
    }

    [Fact]
    public void CmpTestMemoryForms_SetFlagsWithoutWriting()
    {
        using var f = new CpuFixture();
        f.W64(CpuFixture.DataBase, 10);
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rbx, CpuFixture.DataBase);
            a.mov(rcx, 3);
            a.cmp(__qword_ptr[rbx], rcx);     // 10 vs 3
            a.setg(r8b);
            a.cmp(__qword_ptr[rbx], 11);
            a.setl(r9b);
            a.test(__qword_ptr[rbx], rcx);    // 10 & 3 = 2
            a.setne(r10b);
            a.test(__byte_ptr[rbx], 5);       // 10 & 5 = 0
            a.sete(r11b);
            a.add(__qword_ptr[rbx], rcx);     // 13, written
            a.sub(__dword_ptr[rbx], 1);       // 12
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(1UL, cpu.GetGpr(Gpr.R8));
        Assert.Equal(1UL, cpu.GetGpr(Gpr.R9));
        Assert.Equal(1UL, cpu.GetGpr(Gpr.R10));
        Assert.Equal(1UL, cpu.GetGpr(Gpr.R11));
        Assert.Equal(12UL, f.R64(CpuFixture.DataBase));
    }

    [Fact]
    public void CmovAndXchg_WorkAndZeroExtend()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rax, -1);
            a.mov(ebx, 5);
            a.cmp(ebx, 6);
            a.cmovg(eax, ebx);          // not taken, but eax zero-extends
            a.mov(rcx, 1);
            a.mov(rdx, 2);
            a.cmovl(rcx, rdx);          // taken
            a.xchg(rcx, rdx);
            a.mov(r8, 0x1122334455667788);
            a.bswap(r8);
            a.mov(rsi, CpuFixture.DataBase);
            a.mov(__qword_ptr[rsi], 9);
            a.mov(r9, 4);
            a.xchg(__qword_ptr[rsi], r9);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0xFFFF_FFFFUL, cpu.GetGpr(Gpr.Rax));
        Assert.Equal(2UL, cpu.GetGpr(Gpr.Rdx));
        Assert.Equal(2UL, cpu.GetGpr(Gpr.Rcx));
        Assert.Equal(0x8877665544332211UL, cpu.GetGpr(Gpr.R8));
        Assert.Equal(9UL, cpu.GetGpr(Gpr.R9));
        Assert.Equal(4UL, f.R64(CpuFixture.DataBase));
    }

    [Fact]
    public void StringOps_RepMovsStosScas_Work()
    {
        using var f = new CpuFixture();
        var src = new byte[10000];
        new Random(1).NextBytes(src);
        src[9000] = 0xAB;
        for (int i = 0; i < 9000; i++) if (src[i] == 0xAB) src[i] = 0;
        f.Write(CpuFixture.DataBase, src);
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rsi, CpuFixture.DataBase);
            a.mov(rdi, CpuFixture.DataBase + 0x10001);   // unaligned destination, crosses pages
            a.mov(rcx, 10000);
            a.rep.movsb();
            a.mov(rdi, CpuFixture.DataBase + 0x20000);
            a.mov(rax, 0x0101010101010101);
            a.mov(rcx, 1000);
            a.rep.stosq();
            a.mov(rdi, CpuFixture.DataBase);
            a.mov(al, 0xAB);
            a.mov(rcx, 10000);
            a.repne.scasb();
            a.mov(r8, rcx);
            a.mov(r9, rdi);
            a.std();
            a.mov(rdi, CpuFixture.DataBase + 0x30008);
            a.mov(eax, 7);
            a.stosd();
            a.cld();
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(src, f.Read(CpuFixture.DataBase + 0x10001, 10000));
        Assert.All(f.Read(CpuFixture.DataBase + 0x20000, 8000), b => Assert.Equal(1, b));
        Assert.Equal(0, f.Read(CpuFixture.DataBase + 0x20000 + 8000, 1)[0]);
        Assert.Equal(10000UL - 9001, cpu.GetGpr(Gpr.R8));
        Assert.Equal(CpuFixture.DataBase + 9001, cpu.GetGpr(Gpr.R9));
        Assert.Equal(7u, BitConverter.ToUInt32(f.Read(CpuFixture.DataBase + 0x30008, 4)));
        Assert.Equal(CpuFixture.DataBase + 0x30004, cpu.GetGpr(Gpr.Rdi));
    }
}
