using Iced.Intel;
using ToyVmm.Cpu;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

public class MemoryAndCodeTests
{
    [Fact]
    public void Run_SelfModifyingCode_ExecutesTheNewBytes()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            var patch = a.CreateLabel();
            var loop = a.CreateLabel();
            a.mov(ecx, 3);
            a.Label(ref loop);
            a.call(patch);              // first time returns 1, later 2
            a.add(r8, rax);
            // Patch the immediate of "mov eax, imm32" below (b8 imm32): the byte after the opcode.
            a.lea(rbx, __[patch]);
            a.mov(__byte_ptr[rbx + 1], 2);
            a.dec(ecx);
            a.jnz(loop);
            a.hlt();
            a.Label(ref patch);
            a.mov(eax, 1);
            a.ret();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(1UL + 2 + 2, cpu.GetGpr(Gpr.R8));
    }

    [Fact]
    public void Run_StoreIntoOwnBlock_NextInstructionSeesIt()
    {
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            var target = a.CreateLabel();
            a.lea(rbx, __[target]);
            a.mov(__byte_ptr[rbx + 1], 0x55);   // mov eax, 0x11 -> mov eax, 0x55, same block
            a.Label(ref target);
            a.mov(eax, 0x11);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0x55UL, cpu.GetGpr(Gpr.Rax));
    }

    [Fact]
    public void Run_CrossModifyingCode_OtherVcpuSeesThePatch()
    {
        using var f = new CpuFixture();
        ulong fn = 0x180000;
        f.Write(fn, CpuFixture.Assemble(a => { a.mov(eax, 1); a.ret(); }, fn));
        // vCPU 0 calls fn until it returns 2; vCPU 1 spins a while, then patches fn's immediate.
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a =>
        {
            var cpu1 = a.CreateLabel(); var loop = a.CreateLabel(); var spin = a.CreateLabel();
            a.test(edi, edi);
            a.jnz(cpu1);
            a.Label(ref loop);
            a.mov(rax, fn);
            a.call(rax);
            a.inc(r12);
            a.cmp(eax, 2);
            a.jne(loop);
            a.hlt();
            a.Label(ref cpu1);
            a.mov(ecx, 200_000);
            a.Label(ref spin);
            a.dec(ecx);
            a.jnz(spin);
            a.mov(rbx, fn);
            a.mov(__byte_ptr[rbx + 1], 2);
            a.hlt();
        }));
        var cpus = new[] { f.NewVcpu(0, 2), f.NewVcpu(1, 2) };
        var exits = new VcpuExit[2];
        var threads = cpus.Select((c, i) => new Thread(() => exits[i] = c.Run(200_000_000))).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        Assert.Equal(VcpuExitKind.Halted, exits[1].Kind);
        Assert.Equal(VcpuExitKind.Halted, exits[0].Kind);
        Assert.Equal(2UL, cpus[0].GetGpr(Gpr.Rax));
        Assert.True(cpus[0].GetGpr(Gpr.R12) > 1);
    }

    [Fact]
    public void Run_LongRepStos_YieldsToRequestsAndCompletes()
    {
        using var f = new CpuFixture(64 << 20);
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a =>
        {
            a.mov(rdi, 0x400000);
            a.mov(rcx, 32 << 20);
            a.mov(al, 0x5A);
            a.rep.stosb();
            a.hlt();
        }));
        var cpu = f.NewVcpu();
        bool finished = false;
        var t = new Thread(() =>
        {
            // The rep may be over before this thread runs at all (a loaded machine): then stop waiting.
            while (cpu.Link.Mode != ToyVmm.Mmu.Secondary.VcpuMode.InGuest && !Volatile.Read(ref finished)) Thread.Yield();
            for (int i = 0; i < 50; i++) cpu.Link.WaitForFlush(cpu.Link.RequestFlush());
        });
        t.Start();
        var exit = cpu.Run();
        Volatile.Write(ref finished, true);
        t.Join();
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0UL, cpu.GetGpr(Gpr.Rcx));
        Assert.All(f.Read(0x400000 + (32 << 20) - 4096, 4096), b => Assert.Equal(0x5A, b));
        Assert.Equal(0, f.Read(0x400000 + (32 << 20), 1)[0]);
    }

    [Fact]
    public void Run_CodeReplacedByDiscard_IsDecodedAgain()
    {
        using var f = new CpuFixture();
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a => { a.mov(eax, 1); a.hlt(); }));
        var cpu = f.NewVcpu();
        Assert.Equal(VcpuExitKind.Halted, cpu.Run().Kind);
        Assert.Equal(1UL, cpu.GetGpr(Gpr.Rax));
        f.Memory.Discard(new ToyVmm.Mmu.Gpa(CpuFixture.CodeBase), 4096);   // zeroes: 00 00 = add [rax], al
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a => { a.mov(eax, 2); a.hlt(); }));   // behind the vCPU's back
        f.Memory.Discard(new ToyVmm.Mmu.Gpa(0x1000_0000 & 0), 0);
        cpu.Rip = CpuFixture.CodeBase;
        // Direct host writes are not seen (no notification) but Discard before them invalidated the block.
        Assert.Equal(VcpuExitKind.Halted, cpu.Run().Kind);
        Assert.Equal(2UL, cpu.GetGpr(Gpr.Rax));
    }

    [Fact]
    public void Run_LockedIncrementsOnTwoVcpus_AreAtomic()
    {
        using var f = new CpuFixture();
        const int N = 200_000;
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a =>
        {
            var loop = a.CreateLabel();
            a.mov(rbx, CpuFixture.DataBase);
            a.mov(ecx, N);
            a.Label(ref loop);
            a.@lock.inc(__qword_ptr[rbx]);
            a.mov(eax, 1);
            a.@lock.xadd(__qword_ptr[rbx + 8], rax);
            a.@lock.add(__dword_ptr[rbx + 16], 2);
            a.dec(ecx);
            a.jnz(loop);
            a.hlt();
        }));
        var cpus = new[] { f.NewVcpu(0, 2), f.NewVcpu(1, 2) };
        var exits = new VcpuExit[2];
        var threads = cpus.Select((c, i) => new Thread(() => exits[i] = c.Run())).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        Assert.All(exits, e => Assert.Equal(VcpuExitKind.Halted, e.Kind));
        Assert.Equal(2UL * N, f.R64(CpuFixture.DataBase));
        Assert.Equal(2UL * N, f.R64(CpuFixture.DataBase + 8));
        Assert.Equal(4UL * N, f.R64(CpuFixture.DataBase + 16) & 0xFFFF_FFFF);
    }

    [Fact]
    public void Run_CmpxchgSpinLock_ProtectsACounter()
    {
        using var f = new CpuFixture();
        const int N = 20_000;
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a =>
        {
            var loop = a.CreateLabel(); var spin = a.CreateLabel();
            a.mov(rbx, CpuFixture.DataBase);
            a.mov(r12d, N);
            a.Label(ref loop);
            a.nop();
            a.Label(ref spin);
            a.xor(eax, eax);
            a.mov(edx, 1);
            a.@lock.cmpxchg(__dword_ptr[rbx], edx);
            a.jnz(spin);
            a.mov(rcx, __qword_ptr[rbx + 8]);   // unlocked read-modify-write under the lock
            a.inc(rcx);
            a.mov(__qword_ptr[rbx + 8], rcx);
            a.mov(__dword_ptr[rbx], 0);
            a.dec(r12d);
            a.jnz(loop);
            a.hlt();
        }));
        var cpus = new[] { f.NewVcpu(0, 2), f.NewVcpu(1, 2) };
        var threads = cpus.Select(c => new Thread(() => c.Run())).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        Assert.Equal(2UL * N, f.R64(CpuFixture.DataBase + 8));
    }

    /// <summary>Builds 4 KiB-page tables for [0, 4 MiB) at 0x400000 with <paramref name="flags"/> per page.</summary>
    private static ulong BuildSmallPages(CpuFixture f, Func<ulong, ulong> flags)
    {
        ulong pml4 = 0x400000, pdpt = 0x401000, pd = 0x402000, pt = 0x403000;
        f.W64(pml4, pdpt | 7);
        f.W64(pdpt, pd | 7);
        for (ulong i = 0; i < 2; i++)
        {
            f.W64(pd + i * 8, (pt + i * 0x1000) | 7);
            for (ulong j = 0; j < 512; j++)
            {
                ulong page = (i << 21) | (j << 12);
                f.W64(pt + i * 0x1000 + j * 8, page | flags(page));
            }
        }
        // Keep the page tables themselves reachable: map [4 MiB, 6 MiB) with one 2 MiB page.
        f.W64(pd + 2 * 8, 0x400000 | 0x87);
        return pml4;
    }

    [Fact]
    public void Walk_SmallPages_SetsAccessedAndDirtyAndHonoursWriteProtect()
    {
        using var f = new CpuFixture();
        ulong roPage = 0x1F0000;
        ulong pml4 = BuildSmallPages(f, p => p == roPage ? 0x1UL : 0x3UL);
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rax, pml4);
            a.mov(cr3, rax);
            a.mov(rbx, 0x1E0000);
            a.mov(__qword_ptr[rbx], 1);         // sets A and D
            a.mov(rcx, __qword_ptr[rbx + 0x1000]);   // sets A only
            a.mov(rdx, roPage);
            a.mov(rsi, __qword_ptr[rdx]);       // read of a read-only page is fine
            a.mov(__qword_ptr[rdx], 1);         // #PF: protection, write
        });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#PF", exit.Message);
        Assert.Contains("error code 0x3", exit.Message);
        ulong pte(ulong page) => f.R64(0x403000 + (page >> 21) * 0x1000 + ((page >> 12) & 511) * 8);
        Assert.Equal(0x60UL, pte(0x1E0000) & 0x60);
        Assert.Equal(0x20UL, pte(0x1E1000) & 0x60);
        Assert.Equal(0x20UL, pte(roPage) & 0x60);
        Assert.Equal(0x20UL, f.R64(0x400000) & 0x20);
    }

    [Fact]
    public void Walk_NxPage_FetchFaultsWithInstructionBit()
    {
        using var f = new CpuFixture();
        ulong nxPage = 0x180000;
        ulong pml4 = BuildSmallPages(f, p => p == nxPage ? 0x8000_0000_0000_0003UL : 0x3UL);
        f.Write(nxPage, [0x90, 0xF4]);
        var (exit, _) = f.Run(a =>
        {
            a.mov(rax, pml4);
            a.mov(cr3, rax);
            a.mov(rax, nxPage);
            a.jmp(rax);
        });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("#PF", exit.Message);
        Assert.Contains("error code 0x11", exit.Message);
        Assert.Contains($"RIP 0x{nxPage:x}", exit.Message);
    }

    [Fact]
    public void Walk_SupervisorPageFromCpl3_Faults()
    {
        using var f = new CpuFixture();
        ulong pml4 = BuildSmallPages(f, p => p == 0x1C0000 ? 0x3UL : 0x7UL);
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a =>
        {
            a.mov(rax, 0x1C0000);
            a.mov(rbx, __qword_ptr[rax]);
        }));
        var cpu = f.NewVcpu();
        cpu.Cr3 = pml4;
        cpu.SetSegment(SegmentRegister.Cs, 0x23, 0);
        var exit = cpu.Run();
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("error code 0x5", exit.Message);
        Assert.Contains("CR2 0x1c0000", exit.Message);
    }

    [Fact]
    public void Run_AccessBeyondRam_VmErrorNamesGuestPhysicalAddress()
    {
        using var f = new CpuFixture();
        ulong pml4 = BuildSmallPages(f, p => 0x3UL);
        f.W64(0x403000 + 0x1A0 * 8, 0x7000_0000 | 3);   // va 0x1A0000 -> gpa 0x70000000 (no RAM there)
        var (exit, _) = f.Run(a =>
        {
            a.mov(rax, pml4);
            a.mov(cr3, rax);
            a.mov(rax, 0x1A0000);
            a.mov(rbx, __qword_ptr[rax]);
        });
        Assert.Equal(VcpuExitKind.VmError, exit.Kind);
        Assert.Contains("0x70000000", exit.Message);
        Assert.Contains("RIP 0x", exit.Message);
    }
}
