using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

public class ExceptionTests
{
    [Fact]
    public void Run_Ud2WithoutIdt_VmErrorNamesVectorRipAndBytes()
    {
        using var f = new CpuFixture();
        var (exit, _) = f.Run(a => { a.nop(); a.ud2(); });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#UD", exit.Message);
        Assert.Contains("vector 6", exit.Message);
        Assert.Contains($"RIP 0x{CpuFixture.CodeBase + 1:x}", exit.Message);
        Assert.Contains("0f 0b", exit.Message);
        Assert.DoesNotContain("\n", exit.Message);
    }

    [Fact]
    public void Run_DivideByZero_VmErrorNamesDe()
    {
        using var f = new CpuFixture();
        var (exit, _) = f.Run(a => { a.xor(ecx, ecx); a.div(rcx); });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#DE (vector 0)", exit.Message);
        Assert.Contains($"RIP 0x{CpuFixture.CodeBase + 2:x}", exit.Message);
    }

    [Fact]
    public void Run_UnmappedRead_VmErrorNamesPfErrorCodeAndCr2()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a => { a.mov(rax, 0x7000_0000_0000); a.mov(__qword_ptr[rax + 8], rbx); });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#PF (vector 14)", exit.Message);
        Assert.Contains("error code 0x2", exit.Message);
        Assert.Contains("CR2 0x700000000008", exit.Message);
        Assert.Equal(CpuFixture.CodeBase + 10, cpu.Rip);
    }

    [Fact]
    public void Run_NonCanonicalAddress_RaisesGp()
    {
        using var f = new CpuFixture();
        var (exit, _) = f.Run(a => { a.mov(rax, 0x8000_0000_0000_0000); a.mov(rbx, __qword_ptr[rax]); });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#GP (vector 13)", exit.Message);
    }

    [Fact]
    public void Run_PrivilegedInstructionAtCpl3_RaisesGp()
    {
        using var f = new CpuFixture();
        var (exit, _) = f.Run(a => { a.hlt(); }, setup: v => v.SetSegment(SegmentRegister.Cs, 0x23, 0));
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#GP", exit.Message);
        Assert.Contains("CPL 3", exit.Message);
    }

    /// <summary>Writes a 64-bit interrupt gate for <paramref name="vector"/> into the IDT at <paramref name="idt"/>.</summary>
    internal static void Gate(CpuFixture f, ulong idt, int vector, ulong handler, int dpl = 0, int type = 0xE, int ist = 0)
    {
        ulong lo = (handler & 0xFFFF) | (0x08UL << 16) | ((ulong)ist << 32) | ((ulong)type << 40) | ((ulong)dpl << 45) | (1UL << 47) | ((handler >> 16 & 0xFFFF) << 48);
        f.W64(idt + (ulong)vector * 16, lo);
        f.W64(idt + (ulong)vector * 16 + 8, handler >> 32);
    }

    [Fact]
    public void Run_ExceptionsThroughIdt_HandlersSeeErrorCodeAndCr2()
    {
        using var f = new CpuFixture();
        ulong idt = 0x300000;
        ulong handlers = 0x140000;
        // #PF handler: r8 = CR2, r9 = error code, skip the 3-byte faulting store.
        f.Write(handlers, CpuFixture.Assemble(a =>
        {
            a.mov(r8, cr2);
            a.pop(r9);
            a.add(__qword_ptr[rsp], 3);
            a.iretq();
        }, handlers));
        // #DE handler: r10 = 0xDE, skip the 3-byte div.
        f.Write(handlers + 0x100, CpuFixture.Assemble(a =>
        {
            a.mov(r10, 0xDE);
            a.add(__qword_ptr[rsp], 3);
            a.iretq();
        }, handlers + 0x100));
        // int 0x80 handler: r11 = rax + 1.
        f.Write(handlers + 0x200, CpuFixture.Assemble(a => { a.lea(r11, __[rax + 1]); a.iretq(); }, handlers + 0x200));
        Gate(f, idt, 14, handlers);
        Gate(f, idt, 0, handlers + 0x100);
        Gate(f, idt, 0x80, handlers + 0x200, dpl: 3);
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rax, 0x5000_0000_0000);
            a.mov(__qword_ptr[rax], rbx);   // 48 89 18
            a.xor(ecx, ecx);
            a.div(rcx);
            a.mov(eax, 41);
            a.@int(0x80);
            a.hlt();
        }, setup: v => v.SetIdtr(idt, 0xFFF));
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0x5000_0000_0000UL, cpu.GetGpr(Gpr.R8));
        Assert.Equal(2UL, cpu.GetGpr(Gpr.R9));           // not present, write, supervisor
        Assert.Equal(0xDEUL, cpu.GetGpr(Gpr.R10));
        Assert.Equal(42UL, cpu.GetGpr(Gpr.R11));
        Assert.Equal(3, cpu.ExceptionsDelivered);
        Assert.Equal(f.RamBytes - 0x100000, cpu.GetGpr(Gpr.Rsp));
    }

    [Fact]
    public void Run_FaultWithoutPresentGate_TripleFaultStopsVm()
    {
        using var f = new CpuFixture();
        var (exit, _) = f.Run(a => { a.ud2(); }, setup: v => v.SetIdtr(0x300000, 0xFFF));
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("triple fault", exit.Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(7)]
    [InlineData(8)]
    public void Run_RandomBytes_EndsInAnExitNeverACrash(int seed)
    {
        using var f = new CpuFixture();
        var rnd = new Random(seed);
        var code = new byte[1 << 16];
        rnd.NextBytes(code);
        f.Write(CpuFixture.CodeBase, code);
        for (int start = 0; start < 4; start++)
        {
            var cpu = f.NewVcpu(rip: CpuFixture.CodeBase + (ulong)rnd.Next(0, 60000));
            var exit = cpu.Run(20_000);
            Assert.True(exit.Kind is VcpuExitKind.VmError or VcpuExitKind.Halted or VcpuExitKind.InstructionLimit or VcpuExitKind.StopRequested, exit.Message);
            if (exit.Kind == VcpuExitKind.VmError) Assert.DoesNotContain("internal interpreter error", exit.Message);
        }
    }
}
