using Iced.Intel;
using ToyVmm.Vm;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Vm;

/// <summary>The VM around the interpreter: entry state, devices, hypercalls, vCPU threads and how a run ends.</summary>
public class VirtualMachineTests
{
    [Fact]
    public void Run_ConsoleThenHlt_PrintsAndEndsHaltedWithZero()
    {
        var run = AsmGuest.Execute(AsmGuest.Build(a =>
        {
            a.Print("hello\n");
            a.hlt();
        }));
        Assert.Equal(VmOutcome.AllHalted, run.Result.Outcome);
        Assert.Equal(0, run.Result.GuestStatus);
        Assert.Equal("hello\n", run.Console);
        Assert.True(run.Result.InstructionsRetired > 0);
    }

    [Theory]
    [InlineData(1, 0x2A, 42)]
    [InlineData(2, 0x1234, 0x34)]
    [InlineData(4, 0xDEADBE00, 0)]
    public void Run_ExitPort_EndsWithValueLowByte(int size, uint value, int expected)
    {
        var run = AsmGuest.Execute(AsmGuest.Build(a =>
        {
            a.Print("x");   // left in the console buffer: must be flushed at exit
            a.mov(eax, value);
            a.mov(dx, (ushort)0xF4);
            switch (size)
            {
                case 1: a.@out(dx, al); break;
                case 2: a.@out(dx, ax); break;
                default: a.@out(dx, eax); break;
            }
            a.Print("not reached");
            a.hlt();
        }));
        Assert.Equal(VmOutcome.ExitPort, run.Result.Outcome);
        Assert.Equal(expected, run.Result.GuestStatus);
        Assert.Equal("x", run.Console);
    }

    [Fact]
    public void Run_EntryState_MatchesGuestAbi()
    {
        const ulong ram = 32UL << 20;
        var run = AsmGuest.Execute(AsmGuest.Build(a =>
        {
            // RFLAGS first (every check below changes the flags), then R15 (the checks' scratch).
            a.pushfq();
            var r15Ok = a.CreateLabel();
            a.test(r15, r15);
            a.jz(r15Ok);
            a.Exit(9);
            a.Label(ref r15Ok);
            // General registers: RDI = 0, RSI = 1, RDX = ram, RSP = top of vCPU 0's stack, the rest 0.
            a.ExpectEqual(rdi, 0, 10);
            a.ExpectEqual(rsi, 1, 11);
            a.ExpectEqual(rdx, ram, 12);
            a.ExpectEqual(rsp, ram - 8, 13);
            byte code = 14;
            foreach (var r in new[] { rax, rbx, rcx, rbp, r8, r9, r10, r11, r12, r13, r14 })
                a.ExpectEqual(r, 0, code++);
            a.mov(rax, __qword_ptr[rsp]);
            a.ExpectEqual(rax, 0x2, 34);
            a.mov(rax, cr0);
            a.ExpectEqual(rax, BootState.EntryCr0, 30);
            a.mov(rax, cr4);
            a.ExpectEqual(rax, BootState.EntryCr4, 31);
            a.mov(rax, cr3);
            a.ExpectEqual(rax, ram - 0x100000 + 0x1000, 32);
            a.mov(ecx, 0xC0000080u);
            a.rdmsr();
            a.shl(rdx, 32);
            a.or(rax, rdx);
            a.ExpectEqual(rax, BootState.EntryEfer, 33);
            a.xor(eax, eax);
            a.mov(ax, cs);
            a.ExpectEqual(rax, 0x08, 35);
            a.mov(ax, ds);
            a.ExpectEqual(rax, 0x10, 36);
            a.mov(ax, ss);
            a.ExpectEqual(rax, 0x10, 37);
            a.mov(ax, es);
            a.ExpectEqual(rax, 0x10, 38);
            a.mov(ax, fs);
            a.ExpectEqual(rax, 0, 39);
            // The stack works and the identity map reaches the last byte below it.
            a.mov(rax, 0x1122334455667788);
            a.push(rax);
            a.mov(rbx, ram - 16);
            a.mov(rcx, __qword_ptr[rbx]);
            a.ExpectEqual(rcx, 0x1122334455667788, 40);
            a.pop(rax);
            a.Exit(0x77);
        }, ram), ram: ram);
        Assert.True(run.Result.Outcome == VmOutcome.ExitPort, run.Result.Message);
        Assert.Equal(0x77, run.Result.GuestStatus);
    }

    [Fact]
    public void Run_FourVcpus_EachHasItsIndexAndStackAndAllHalt()
    {
        const ulong ram = 64UL << 20;
        var run = AsmGuest.Execute(AsmGuest.Build(a =>
        {
            a.ExpectEqual(rsi, 4, 20);
            a.ExpectEqual(rdx, ram, 21);
            // RSP == ram - index * 64 KiB
            a.mov(rax, rdi);
            a.shl(rax, 16);
            a.mov(rbx, ram);
            a.sub(rbx, rax);
            a.cmp(rsp, rbx);
            var ok = a.CreateLabel();
            a.je(ok);
            a.Exit(22);
            a.Label(ref ok);
            // Print 'A' + index, then count in shared memory and halt.
            a.lea(eax, __dword_ptr[rdi + 'A']);
            a.@out(0xE9, al);
            a.mov(rbx, AsmGuest.Data);
            a.@lock.inc(__qword_ptr[rbx]);
            a.hlt();
        }), vcpus: 4, ram: ram);
        Assert.True(run.Result.Outcome == VmOutcome.AllHalted, run.Result.Message);
        Assert.Equal("ABCD", string.Concat(run.Console.Order()));
    }

    [Fact]
    public void Run_OneVcpuExits_StopsTheSpinningOthers()
    {
        var run = AsmGuest.Execute(AsmGuest.Build(a =>
        {
            var spin = a.CreateLabel();
            a.test(rdi, rdi);
            a.jnz(spin);
            a.Exit(9);
            a.Label(ref spin);
            a.jmp(spin);
        }), vcpus: 3, instructionLimit: long.MaxValue);
        Assert.Equal(VmOutcome.ExitPort, run.Result.Outcome);
        Assert.Equal(9, run.Result.GuestStatus);
    }

    [Fact]
    public void Run_Hypercalls_FollowGuestAbi()
    {
        var run = AsmGuest.Execute(AsmGuest.Build(a =>
        {
            // Unknown number -> -1000.
            a.mov(eax, 0x1FFu);
            a.vmcall();
            a.ExpectEqual(rax, unchecked((ulong)-1000L), 1);
            // PAGEOUT of two pages keeps contents and returns 2.
            a.mov(rbx, AsmGuest.Data);
            a.mov(__qword_ptr[rbx], 0x5A);
            a.mov(eax, 0x100u);
            a.mov(ecx, 0x2000u);
            a.vmcall();
            a.ExpectEqual(rax, 2, 2);
            a.mov(rax, __qword_ptr[rbx]);
            a.ExpectEqual(rax, 0x5A, 3);
            // DISCARD of one page zeroes it and returns 1.
            a.mov(eax, 0x101u);
            a.mov(ecx, 0x1000u);
            a.vmcall();
            a.ExpectEqual(rax, 1, 4);
            a.mov(rax, __qword_ptr[rbx]);
            a.ExpectEqual(rax, 0, 5);
            // Bad ranges -> -22: unaligned start, unaligned size, past the end of RAM.
            a.mov(eax, 0x101u);
            a.lea(rbx, __qword_ptr[rbx + 8]);
            a.vmcall();
            a.ExpectEqual(rax, unchecked((ulong)-22L), 6);
            a.mov(eax, 0x100u);
            a.mov(rbx, AsmGuest.Data);
            a.mov(ecx, 0x1001u);
            a.vmcall();
            a.ExpectEqual(rax, unchecked((ulong)-22L), 7);
            a.mov(eax, 0x100u);
            a.mov(rbx, AsmGuest.Ram - 0x1000);
            a.mov(ecx, 0x2000u);
            a.vmcall();
            a.ExpectEqual(rax, unchecked((ulong)-22L), 8);
            a.Exit(0x55);
        }));
        Assert.True(run.Result.Outcome == VmOutcome.ExitPort, run.Result.Message);
        Assert.Equal(0x55, run.Result.GuestStatus);
        Assert.Equal(6, run.Vm.Devices.Counters.Hypercalls);
        Assert.Equal(1, run.Vm.Devices.Counters.UnknownHypercalls);
    }

    /// <summary>
    /// DISCARD reaches the management side of guest memory, whose contents-replaced notice
    /// the VM wires to the decoded-code cache: code run before the DISCARD is decoded again.
    /// Page 1 holds <c>mov eax, 7; ret</c>; after it is discarded, a call runs its zeros
    /// (<c>add [rax], al</c>) into page 2, which exits with 0xAA. A stale block would return 7.
    /// </summary>
    [Fact]
    public void Run_DiscardOfCodeRunBefore_DecodesTheZeroedPageAgain()
    {
        static byte[] Page(ulong at, Action<Assembler> emit)
        {
            var a = new Assembler(64);
            emit(a);
            using var ms = new MemoryStream();
            a.Assemble(new StreamCodeWriter(ms), at);
            var page = new byte[4096];
            ms.ToArray().CopyTo(page, 0);
            return page;
        }
        const ulong sub = AsmGuest.Code + 0x1000, landing = AsmGuest.Code + 0x2000, main = AsmGuest.Code + 0x3000;
        byte[] code =
        [
            .. Page(AsmGuest.Code, a => a.jmp(main)),
            .. Page(sub, a => { a.mov(eax, 7); a.ret(); }),
            .. Page(landing, a => a.Exit(0xAA)),
            .. Page(main, a =>
            {
                a.call(sub);
                a.ExpectEqual(rax, 7, 1);
                a.mov(eax, 0x101u);           // DISCARD the subroutine's page
                a.mov(rbx, sub);
                a.mov(ecx, 0x1000u);
                a.vmcall();
                a.ExpectEqual(rax, 1, 2);
                a.mov(rax, AsmGuest.Data);     // the zeros add al (0) to [Data]
                a.call(sub);
                a.Exit(0x33);                  // only a stale block returns here
            }),
        ];
        var run = AsmGuest.Execute(AsmGuest.FromCode(code));
        Assert.True(run.Result.Outcome == VmOutcome.ExitPort, run.Result.Message);
        Assert.Equal(0xAA, run.Result.GuestStatus);
    }

    [Fact]
    public void Run_OtherPorts_ReadAllOnesIgnoreWritesAndAreCounted()
    {
        var run = AsmGuest.Execute(AsmGuest.Build(a =>
        {
            a.xor(eax, eax);
            a.@in(al, 0x60);
            a.ExpectEqual(rax, 0xFF, 1);
            a.mov(dx, (ushort)0x3F8);
            a.xor(eax, eax);
            a.@in(eax, dx);
            a.ExpectEqual(rax, 0xFFFFFFFF, 2);
            a.@out(dx, al);
            a.@out(0x80, al);
            a.@out(0x80, al);
            a.hlt();
        }));
        Assert.True(run.Result.Outcome == VmOutcome.AllHalted, run.Result.Message);
        Assert.Equal(2, run.Vm.Devices.Counters.UnknownPortIn);
        Assert.Equal(3, run.Vm.Devices.Counters.UnknownPortOut);
    }

    [Fact]
    public void Run_Ud2WithNoIdt_IsVmErrorNamingTheVcpu()
    {
        var run = AsmGuest.Execute(AsmGuest.Build(a => a.ud2()));
        Assert.Equal(VmOutcome.VmError, run.Result.Outcome);
        Assert.StartsWith("vCPU 0: ", run.Result.Message);
        Assert.DoesNotContain('\n', run.Result.Message!);
    }

    [Fact]
    public void Run_AccessToUnbackedGuestPhysical_IsVmErrorNamingTheAddress()
    {
        // 5 MiB of RAM: the identity map's last 2 MiB page covers [4M, 6M), so
        // 0x580000 is mapped but has no RAM behind it.
        const ulong ram = 5UL << 20;
        var run = AsmGuest.Execute(AsmGuest.Build(a =>
        {
            a.mov(rbx, 0x580000UL);
            a.mov(rax, __qword_ptr[rbx]);
            a.Exit(1);
        }, ram), ram: ram);
        Assert.Equal(VmOutcome.VmError, run.Result.Outcome);
        Assert.Contains("580000", run.Result.Message);
    }

    [Fact]
    public void Run_EndlessLoop_StopsAtInstructionLimit()
    {
        var run = AsmGuest.Execute(AsmGuest.Build(a =>
        {
            var top = a.CreateLabel();
            a.Label(ref top);
            a.inc(rax);
            a.jmp(top);
        }), instructionLimit: 100_000);
        Assert.Equal(VmOutcome.InstructionLimit, run.Result.Outcome);
        Assert.Contains("instruction limit (100000)", run.Result.Message);
        Assert.True(run.Result.InstructionsRetired >= 100_000);
    }

    [Fact]
    public void Run_Cancelled_StopsEveryVcpuAsInterrupted()
    {
        var image = AsmGuest.Build(a =>
        {
            var top = a.CreateLabel();
            a.Label(ref top);
            a.jmp(top);
        });
        using var vm = VirtualMachine.Create(new VmConfig(AsmGuest.Ram, 2), image, Stream.Null);
        using var cts = new CancellationTokenSource();
        cts.CancelAfter(TimeSpan.FromMilliseconds(100));
        var result = vm.Run(cts.Token);
        Assert.Equal(VmOutcome.Interrupted, result.Outcome);
    }

    [Fact]
    public void Run_Twice_Throws()
    {
        using var vm = VirtualMachine.Create(new VmConfig(AsmGuest.Ram, 1), AsmGuest.Build(a => a.hlt()), Stream.Null);
        vm.Run();
        Assert.Throws<InvalidOperationException>(() => vm.Run());
    }

    [Fact]
    public void Create_LoadsSegmentsAndZeroesBss()
    {
        var image = AsmGuest.Build(a => a.hlt());
        using var vm = VirtualMachine.Create(new VmConfig(AsmGuest.Ram, 1), image, Stream.Null);
        using var writer = new GuestPhysicalWriter(vm.Memory);
        var code = new byte[image.Segments[0].FileSize];
        writer.Read(image.Segments[0].Start, code);
        Assert.Equal(image.FileBytes(image.Segments[0]).ToArray(), code);
        Assert.Equal(0xF4, code[0]);   // hlt
    }
}
