using Iced.Intel;
using ToyVmm.Cpu;
using ToyVmm.Mmu.Secondary;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// The vCPU's side of a TLB shootdown: quiet instructions, the filter, remote and targeted
/// flushes. How a parked vCPU is judged from outside: TlbShootdownTests.Quiescence.cs.
/// </summary>
public sealed unsafe partial class TlbShootdownTests
{
    private static Instruction Decode(Action<Assembler> build)
    {
        var bytes = CpuFixture.Assemble(build);
        var d = Decoder.Create(64, new ByteArrayCodeReader(bytes), CpuFixture.CodeBase);
        d.Decode(out var ins);
        return ins;
    }

    public static TheoryData<string> QuietForms() => ["add rax, rbx", "mov ecx, 5", "lea rax, [rbx+8]", "jmp", "jnz", "jmp rax", "imul rax, rbx", "paddd xmm0, xmm1", "cpuid"];

    public static TheoryData<string> MemoryForms() =>
        ["mov rax, [rbx]", "add [rbx], eax", "push rax", "pop rax", "call", "ret", "rep movsb", "out dx, al", "vmcall", "mov cr3, rax", "hlt", "int3", "syscall", "ud2", "movdqu xmm0, [rax]"];

    private static Action<Assembler> Form(string form) => a =>
    {
        var l = a.CreateLabel();
        a.Label(ref l);
        switch (form)
        {
            case "add rax, rbx": a.add(rax, rbx); break;
            case "mov ecx, 5": a.mov(ecx, 5); break;
            case "lea rax, [rbx+8]": a.lea(rax, __[rbx + 8]); break;
            case "jmp": a.jmp(l); break;
            case "jnz": a.jnz(l); break;
            case "jmp rax": a.jmp(rax); break;
            case "imul rax, rbx": a.imul(rax, rbx); break;
            case "paddd xmm0, xmm1": a.paddd(xmm0, xmm1); break;
            case "cpuid": a.cpuid(); break;
            case "mov rax, [rbx]": a.mov(rax, __qword_ptr[rbx]); break;
            case "add [rbx], eax": a.add(__dword_ptr[rbx], eax); break;
            case "push rax": a.push(rax); break;
            case "pop rax": a.pop(rax); break;
            case "call": a.call(l); break;
            case "ret": a.ret(); break;
            case "rep movsb": a.rep.movsb(); break;
            case "out dx, al": a.@out(dx, al); break;
            case "vmcall": a.vmcall(); break;
            case "mov cr3, rax": a.mov(cr3, rax); break;
            case "hlt": a.hlt(); break;
            case "int3": a.int3(); break;
            case "syscall": a.syscall(); break;
            case "ud2": a.ud2(); break;
            case "movdqu xmm0, [rax]": a.movdqu(xmm0, __xmmword_ptr[rax]); break;
            default: throw new ArgumentException(form);
        }
    };

    [Theory]
    [MemberData(nameof(QuietForms))]
    public void IsQuiet_InstructionTouchingNoGuestMemory_IsQuiet(string form) =>
        Assert.True(new QuietOps().IsQuiet(Decode(Form(form))), form);

    [Theory]
    [MemberData(nameof(MemoryForms))]
    public void IsQuiet_MemoryStackIoOrSystemInstruction_IsNot(string form) =>
        Assert.False(new QuietOps().IsQuiet(Decode(Form(form))), form);

    private static (CpuFixture f, Vcpu cpu) RanTouchingTwoPages()
    {
        var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rbx, CpuFixture.DataBase);
            a.mov(rax, __qword_ptr[rbx]);
            a.mov(__qword_ptr[rbx + 0x1000], rax);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        return (f, cpu);
    }

    private static nint HostPage(CpuFixture f, ulong gpa)
    {
        fixed (byte* p = f.Memory.Bytes(new ToyVmm.Mmu.Gpa(gpa), 1)) return (nint)p;
    }

    private const ulong DataGfn = CpuFixture.DataBase >> 12;

    [Fact]
    public void ShootDown_DropsOnlyTheRangeEntries_AndTheFilterSaysWhatWasTouched()
    {
        var (f, cpu) = RanTouchingTwoPages();
        using (f)
        {
            Assert.True(cpu.MayHold(DataGfn, DataGfn));
            Assert.True(cpu.MayHold(DataGfn + 1, DataGfn + 1));
            Assert.False(cpu.MayHold(DataGfn + 5, DataGfn + 9));
            Assert.True(cpu.Maps(DataGfn, HostPage(f, CpuFixture.DataBase)));
            Assert.True(cpu.Maps(DataGfn + 1, HostPage(f, CpuFixture.DataBase + 0x1000)));
            Assert.False(cpu.Maps(DataGfn, HostPage(f, CpuFixture.DataBase + 0x1000)));
            cpu.ShootDown(DataGfn, DataGfn);
            Assert.False(cpu.Maps(DataGfn, HostPage(f, CpuFixture.DataBase)));
            Assert.True(cpu.Maps(DataGfn + 1, HostPage(f, CpuFixture.DataBase + 0x1000)));
        }
    }

    [Fact]
    public void FlushRequest_ForOneRange_KeepsTheOtherEntries_AndRebuildsTheFilter()
    {
        var (f, cpu) = RanTouchingTwoPages();
        using (f)
        {
            Assert.Equal(-1, cpu.Link.RequestFlush(DataGfn, DataGfn));   // halted: taken on the next entry
            cpu.Rip = CpuFixture.CodeBase + 0x800;
            f.Write(cpu.Rip, CpuFixture.Assemble(a => a.hlt(), cpu.Rip));
            Assert.Equal(VcpuExitKind.Halted, cpu.Run().Kind);
            Assert.False(cpu.Maps(DataGfn, HostPage(f, CpuFixture.DataBase)));
            Assert.False(cpu.MayHold(DataGfn, DataGfn));
            Assert.True(cpu.Maps(DataGfn + 1, HostPage(f, CpuFixture.DataBase + 0x1000)));
            Assert.True(cpu.MayHold(DataGfn + 1, DataGfn + 1));
            Assert.Equal(cpu.Link.PostedGeneration, cpu.Link.FlushedGeneration);
        }
    }

    /// <summary>Take a flush of [<paramref name="first"/>, <paramref name="last"/>] at a block boundary (the next guest entry).</summary>
    private static void FlushAtEntry(CpuFixture f, Vcpu cpu, ulong first, ulong last)
    {
        Assert.Equal(-1, cpu.Link.RequestFlush(first, last));   // halted: taken on the next entry
        cpu.Rip = CpuFixture.CodeBase + 0x800;
        f.Write(cpu.Rip, CpuFixture.Assemble(a => a.hlt(), cpu.Rip));
        Assert.Equal(VcpuExitKind.Halted, cpu.Run().Kind);
        Assert.Equal(cpu.Link.PostedGeneration, cpu.Link.FlushedGeneration);
    }

    private const ulong BucketApart = 8192;   // guest frames that share a filter bit and an index list

    [Fact]
    public void FlushRequest_ForOnePage_DropsItsReadAndWriteEntries_AndKeepsABucketNeighbour()
    {
        using var f = new CpuFixture(48 << 20);
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rbx, CpuFixture.DataBase);
            a.mov(rax, __qword_ptr[rbx]);                 // read entry of the page
            a.mov(__qword_ptr[rbx], rax);                 // write entry of the page
            a.mov(__qword_ptr[rbx + 0x1000], rax);        // the next page
            a.mov(rcx, CpuFixture.DataBase + (BucketApart << 12));
            a.mov(rax, __qword_ptr[rcx]);                 // same list, same read slot: evicts the first read entry
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        nint page = HostPage(f, CpuFixture.DataBase), next = HostPage(f, CpuFixture.DataBase + 0x1000);
        nint far = HostPage(f, CpuFixture.DataBase + (BucketApart << 12));
        Assert.True(cpu.Maps(DataGfn, page));
        Assert.True(cpu.Maps(DataGfn + BucketApart, far));
        FlushAtEntry(f, cpu, DataGfn, DataGfn);
        Assert.False(cpu.Maps(DataGfn, page));
        Assert.True(cpu.Maps(DataGfn + BucketApart, far));
        Assert.True(cpu.Maps(DataGfn + 1, next));
        Assert.True(cpu.MayHold(DataGfn + BucketApart, DataGfn + BucketApart));   // its entry is live: the shared bit stays
        FlushAtEntry(f, cpu, DataGfn + BucketApart, DataGfn + BucketApart);
        Assert.False(cpu.Maps(DataGfn + BucketApart, far));
        Assert.False(cpu.MayHold(DataGfn, DataGfn));
        Assert.True(cpu.MayHold(DataGfn + 1, DataGfn + 1));
    }

    [Fact]
    public void FlushRequest_AfterManyPointersTaken_RebuildsTheFilter_AndForgetsEvictedPages()
    {
        using var f = new CpuFixture(48 << 20);
        const int Many = 300;
        var (exit, cpu) = f.Run(a =>
        {
            var loop = a.CreateLabel();
            a.mov(rbx, CpuFixture.DataBase);
            a.mov(rax, __qword_ptr[rbx]);
            a.mov(rax, __qword_ptr[rbx + (Mem.TlbSize << 12)]);   // same read slot: the first entry is evicted, its bit stays
            a.mov(rsi, CpuFixture.DataBase + (2 * Mem.TlbSize + 1 << 12));
            a.mov(ecx, Many);
            a.Label(ref loop);
            a.mov(rax, __qword_ptr[rsi]);
            a.add(rsi, 0x1000);
            a.dec(ecx);
            a.jnz(loop);
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        const ulong Other = DataGfn + 5;   // never touched
        Assert.False(cpu.Maps(DataGfn, HostPage(f, CpuFixture.DataBase)));
        Assert.True(cpu.MayHold(DataGfn, DataGfn));   // conservative until the filter is rebuilt
        FlushAtEntry(f, cpu, Other, Other);
        Assert.False(cpu.MayHold(DataGfn, DataGfn));
        Assert.True(cpu.MayHold(DataGfn + Mem.TlbSize, DataGfn + Mem.TlbSize));
        Assert.True(cpu.MayHold(DataGfn + 2 * Mem.TlbSize + 1, DataGfn + 2 * Mem.TlbSize + 1));
    }

    [Fact]
    public void FlushRequest_FewPointersTaken_DropsByFrame_AndLeavesAnEvictedPagesBitSet()
    {
        using var f = new CpuFixture(48 << 20);
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rbx, CpuFixture.DataBase);
            a.mov(rax, __qword_ptr[rbx]);
            a.mov(rax, __qword_ptr[rbx + (Mem.TlbSize << 12)]);   // evicts the first entry
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        FlushAtEntry(f, cpu, DataGfn + Mem.TlbSize, DataGfn + Mem.TlbSize);
        Assert.False(cpu.Maps(DataGfn + Mem.TlbSize, HostPage(f, CpuFixture.DataBase + (Mem.TlbSize << 12))));
        Assert.False(cpu.MayHold(DataGfn + Mem.TlbSize, DataGfn + Mem.TlbSize));
        Assert.True(cpu.MayHold(DataGfn, DataGfn));   // stale but safe: only a rebuild or a whole flush clears it
    }

    [Fact]
    public void Progress_MovesWhileTheVcpuRetiresBlocks()
    {
        using var f = new CpuFixture();
        var cpu = f.NewVcpu();
        long before = cpu.Progress;
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a =>
        {
            var l = a.CreateLabel();
            a.mov(ecx, 100);
            a.Label(ref l);
            a.dec(ecx);
            a.jnz(l);
            a.hlt();
        }));
        Assert.Equal(VcpuExitKind.Halted, cpu.Run().Kind);
        Assert.True(cpu.Progress > before);
    }

    [Fact]
    public void FlushLocked_BatchWiderThanTheFilterLimit_AsksTheFilterAboutEachListedFrame()
    {
        var (f, cpu, b) = RanMovsThenPush();
        using (f)
        {
            const ulong A = DataGfn;
            VcpuLink[] vcpus = [cpu.Link];
            cpu.Link.EnterGuest();
            Park(cpu, b, 3, CpuFixture.DataBase);         // at the push: never done from outside
            // Frames A - 40 and A + 60 were never touched: the listed frames say so, the span (over 64) cannot.
            ulong[] listed = [A - 40, A + 60];
            var counts = new ShootdownCounts();
            VcpuShootdown.FlushLocked(vcpus, null, ref counts, ulong.MaxValue, listed[0], listed[^1], listed);
            Assert.Equal(1, counts.NotHeld);
            Assert.Equal(cpu.Link.PostedGeneration, cpu.Link.RemoteGeneration);
            // A listed frame it touched (A + 1): asked, and waited for since it is parked at a push.
            ulong[] touched = [A - 40, A + 1, A + 60];
            var held = new ShootdownCounts();
            var flush = new Thread(() => VcpuShootdown.FlushLocked(vcpus, null, ref held, ulong.MaxValue, touched[0], touched[^1], touched));
            flush.Start();
            Assert.False(flush.Join(TimeSpan.FromMilliseconds(100)));
            Unpark(cpu);
            cpu.Link.TakeRequests();
            cpu.Link.TakeFlushRanges(new (ulong, ulong)[VcpuLink.MaxPendingRanges]);
            cpu.Link.AcknowledgeFlush();
            Assert.True(flush.Join(TimeSpan.FromSeconds(20)));
            Assert.Equal(0, held.NotHeld);
            Assert.Equal(1, held.Waited);
            cpu.Link.ExitGuest();
        }
    }
}
