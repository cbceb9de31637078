using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// The TLB-hit variants of SSE loads/stores, push/pop and call/ret: the data and stack pages
/// are touched first so the TLB holds them, then the same forms must give the general
/// variants' results (a single instruction on a cold TLB only ever runs the general one).
/// </summary>
public class FastPathTests
{
    private static UInt128 U(ulong hi, ulong lo) => new(hi, lo);

    [Fact]
    public void SseMemoryForms_WarmTlb_MatchGeneralResults()
    {
        using var f = new CpuFixture();
        ulong d = CpuFixture.DataBase;
        f.W64(d, 0x1111_2222_3333_4444);
        f.W64(d + 8, 0x5555_6666_7777_8888);
        f.W64(d + 0xFF8, 0x0102_0304_0506_0708);     // a 16-byte load crossing into the next page
        f.W64(d + 0x1000, 0x090A_0B0C_0D0E_0F10);
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rax, d);
            a.mov(rbx, __qword_ptr[rax]);            // read TLB filled
            a.mov(__qword_ptr[rax + 0x100], rbx);    // write TLB filled
            a.pcmpeqd(xmm0, xmm0);
            a.movd(xmm0, __dword_ptr[rax + 4]);      // LoadZx m32: zero-extends
            a.pcmpeqd(xmm1, xmm1);
            a.movq(xmm1, __qword_ptr[rax + 8]);      // LoadZx m64
            a.movdqa(xmm2, __xmmword_ptr[rax]);      // LoadZx m128 aligned
            a.movdqu(xmm3, __xmmword_ptr[rax + 0xFF8]);  // crosses the page: general variant
            a.movdqa(xmm4, xmm2);
            a.paddd(xmm4, __xmmword_ptr[rax]);       // V2 with a memory source
            a.movdqa(xmm5, xmm2);
            a.addss(xmm5, __dword_ptr[rax + 8]);     // V2 with an m32 source
            a.movdqa(__xmmword_ptr[rax + 0x110], xmm4);  // StoreM m128
            a.movd(__dword_ptr[rax + 0x120], xmm2);  // StoreM m32
            a.movq(__qword_ptr[rax + 0x128], xmm1);  // StoreM m64
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(U(0, 0x1111_2222), cpu.GetXmm(0));
        Assert.Equal(U(0, 0x5555_6666_7777_8888), cpu.GetXmm(1));
        Assert.Equal(U(0x5555_6666_7777_8888, 0x1111_2222_3333_4444), cpu.GetXmm(2));
        Assert.Equal(U(0x090A_0B0C_0D0E_0F10, 0x0102_0304_0506_0708), cpu.GetXmm(3));
        Assert.Equal(U(0xAAAA_CCCC_EEEF_1110, 0x2222_4444_6666_8888), cpu.GetXmm(4));
        float sum = BitConverter.Int32BitsToSingle(0x3333_4444) + BitConverter.Int32BitsToSingle(0x7777_8888);
        Assert.Equal(U(0x5555_6666_7777_8888, 0x1111_2222_0000_0000UL | (uint)BitConverter.SingleToInt32Bits(sum)), cpu.GetXmm(5));
        Assert.Equal(0x2222_4444_6666_8888UL, f.R64(d + 0x110));
        Assert.Equal(0xAAAA_CCCC_EEEF_1110UL, f.R64(d + 0x118));
        Assert.Equal(0x3333_4444UL, f.R64(d + 0x120) & 0xFFFF_FFFF);
        Assert.Equal(0x5555_6666_7777_8888UL, f.R64(d + 0x128));
    }

    [Fact]
    public void MovdqaStoreUnaligned_WarmTlb_RaisesGp()
    {
        using var f = new CpuFixture();
        var (exit, _) = f.Run(a =>
        {
            a.mov(rax, CpuFixture.DataBase);
            a.mov(__qword_ptr[rax + 8], rax);        // write TLB filled
            a.movdqa(__xmmword_ptr[rax + 8], xmm0);
        });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#GP", exit.Message);
    }

    [Fact]
    public void CallRetPushPop_Loop_KeepStackAndValues()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            var loop = a.CreateLabel();
            var fn = a.CreateLabel();
            var done = a.CreateLabel();
            a.mov(rbp, rsp);
            a.xor(rbx, rbx);
            a.mov(ecx, 100);
            a.Label(ref loop);
            a.push(rcx);
            a.push(rbx);
            a.call(fn);
            a.pop(rbx);
            a.pop(rcx);
            a.add(rbx, rax);
            a.dec(ecx);
            a.jnz(loop);
            a.lea(rdx, __[fn]);
            a.call(rdx);                             // call r64
            a.jmp(done);
            a.Label(ref fn);
            a.mov(rax, __qword_ptr[rsp + 16]);       // the pushed rcx
            a.shl(rax, 1);
            a.ret();
            a.Label(ref done);
            a.push(rsp);
            a.pop(rsi);                              // the value pushed is RSP before the push
            a.push(rbx);
            a.pop(rsp);                              // the loaded value wins
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(2UL * 5050, cpu.GetGpr(Gpr.Rbx));
        Assert.Equal(cpu.GetGpr(Gpr.Rbp), cpu.GetGpr(Gpr.Rsi));
        Assert.Equal(2UL * 5050, cpu.GetGpr(Gpr.Rsp));
    }

    [Fact]
    public void IncDecRegister_AfterEveryFlagProducer_KeepCarry()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            a.stc(); a.inc(eax); a.setc(bl);                              // materialised CF=1
            a.mov(ecx, -1); a.add(ecx, 1); a.dec(rcx); a.setc(bh);        // add carry
            a.mov(ecx, 0); a.sub(ecx, 1); a.inc(cx); a.setc(dl);          // sub borrow
            a.mov(ecx, 0x80000000); a.shl(ecx, 1); a.dec(ecx); a.setc(dh); // shift carry (ResCO)
            a.inc(ecx); a.inc(ecx); a.setc(sil);                          // inc after inc: still 1
            a.xor(ecx, ecx); a.dec(cl); a.setc(dil);                      // logic: 0
            a.stc(); a.mov(ecx, 5); a.adc(ecx, 0); a.inc(rcx); a.setc(r8b); // adc: general path, CF 0
            a.mov(ecx, -1); a.stc(); a.adc(ecx, 0); a.dec(ecx); a.setc(r9b); // adc carry out: 1
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0x0101UL, cpu.GetGpr(Gpr.Rbx) & 0xFFFF);
        Assert.Equal(0x0101UL, cpu.GetGpr(Gpr.Rdx) & 0xFFFF);
        Assert.Equal(1UL, cpu.GetGpr(Gpr.Rsi) & 0xFF);
        Assert.Equal(0UL, cpu.GetGpr(Gpr.Rdi) & 0xFF);
        Assert.Equal(0UL, cpu.GetGpr(Gpr.R8) & 0xFF);
        Assert.Equal(1UL, cpu.GetGpr(Gpr.R9) & 0xFF);
        Assert.Equal(0xFFFF_FFFFUL, cpu.GetGpr(Gpr.Rcx));
    }
}
