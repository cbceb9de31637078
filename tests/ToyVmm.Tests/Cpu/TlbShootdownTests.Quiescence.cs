using Iced.Intel;
using ToyVmm.Cpu;
using ToyVmm.Mmu.Secondary;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// How an invalidator judges, from outside, a vCPU the host has descheduled: what each access
/// publishes, which handlers count as narrow stores or checked loads, the run loop's boundary,
/// and a flush completed from outside or waited for (TlbShootdown.cs, mmu/LOCKING.md).
/// </summary>
public sealed unsafe partial class TlbShootdownTests
{
    /// <summary>A vCPU that read page A (DataGfn) and wrote page A + 1, then halted; its block and the block's ops.</summary>
    private static (CpuFixture f, Vcpu cpu, nint block) RanMovsThenPush()
    {
        var f = new CpuFixture();
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rbx, CpuFixture.DataBase);              // op 0: quiet
            a.mov(rax, __qword_ptr[rbx]);                 // op 1: plain load of page A
            a.mov(__qword_ptr[rbx + 0x1000], rax);        // op 2: plain store to page A + 1
            a.push(rax);                                  // op 3: a stack access
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Block* b = CodeCache.For(f.Memory).Lookup(CpuFixture.CodeBase, CpuFixture.CodeBase);
        Assert.True(b != null);
        return (f, cpu, (nint)b);
    }

    /// <summary>Leave the vCPU as if the host had descheduled it at op <paramref name="op"/> of <paramref name="block"/> after it published <paramref name="accessVa"/>.</summary>
    private static void Park(Vcpu cpu, nint block, int op, ulong accessVa)
    {
        CpuState* s = cpu.State;
        s->CurBlock = (Block*)block;
        s->CurOp = Block.OpsOf((Block*)block) + op;
        s->AccessVa = accessVa;
    }

    private static void Unpark(Vcpu cpu) { cpu.State->CurOp = null; cpu.State->CurBlock = null; }

    [Fact]
    public void IsQuiescentFor_VcpuParkedInAPlainMovStoreToPageA1_IsDoneForOtherPages_ButNotForPageA1()
    {
        var (f, cpu, b) = RanMovsThenPush();
        using (f)
        {
            const ulong A = DataGfn;
            Park(cpu, b, 2, CpuFixture.DataBase + 0x1000);   // published its own address: may hold page A + 1
            Assert.False(cpu.IsQuiescentFor(A + 1, A + 1));
            Assert.True(cpu.IsQuiescentFor(A, A));
            Assert.True(cpu.IsQuiescentFor(A + 5, A + 9));
            cpu.ShootDown(A + 1, A + 1);                  // cleared from outside: the entry keeps its frame
            Assert.False(cpu.IsQuiescentFor(A + 1, A + 1));
            Park(cpu, b, 2, Vcpu.AccessTranslating);      // a checked read's marker is no store's
            Assert.False(cpu.IsQuiescentFor(A + 5, A + 5));
            Unpark(cpu);
        }
    }

    [Fact]
    public void IsQuiescentFor_StoreParkedBeforeItPublished_IsDone_WhateverTheEarlierAccessTouched()
    {
        var (f, cpu, b) = RanMovsThenPush();
        using (f)
        {
            const ulong A = DataGfn;
            // At op 2 (store to rbx + 0x1000) with op 1's address still published: the store has
            // not probed yet (its registers give another address), and op 1's load is over.
            Park(cpu, b, 2, CpuFixture.DataBase);
            Assert.True(cpu.IsQuiescentFor(A, A));
            Assert.True(cpu.IsQuiescentFor(A + 1, A + 1));
            cpu.State->Regs[3] = CpuFixture.DataBase - 0x1000;   // rbx: now the store's own address is the published one
            Assert.False(cpu.IsQuiescentFor(A, A));
            cpu.State->Regs[3] = CpuFixture.DataBase;
            Unpark(cpu);
        }
    }

    [Fact]
    public void IsQuiescentFor_VcpuParkedInACheckedLoad_IsDoneEvenForThePageItReads_ButNotInsideItsSlowPath()
    {
        var (f, cpu, b) = RanMovsThenPush();
        using (f)
        {
            const ulong A = DataGfn;
            Park(cpu, b, 1, CpuFixture.DataBase);         // op 1 loads page A: its load is checked afterwards
            Assert.True(cpu.IsQuiescentFor(A, A));
            Park(cpu, b, 1, Vcpu.AccessTranslating);      // its slow path, holding nothing it would use unchecked
            Assert.True(cpu.IsQuiescentFor(A, A));
            Park(cpu, b, 1, Vcpu.AccessUnknown);          // its slow path, using a page-table pointer
            Assert.False(cpu.IsQuiescentFor(A, A));
            Unpark(cpu);
        }
    }

    [Fact]
    public void IsQuiescentFor_AtTheRunLoopsBoundary_IsDone_AndWithABlockOrAnotherAddressIsNot()
    {
        var (f, cpu, b) = RanMovsThenPush();
        using (f)
        {
            // Run returned from hlt through the boundary: no op, no block, the boundary marker.
            Assert.True(cpu.State->CurBlock == null);
            Assert.Equal(Vcpu.AccessBoundary, cpu.State->AccessVa);
            Assert.True(cpu.IsQuiescentFor(DataGfn, DataGfn));
            cpu.State->CurBlock = (Block*)b;              // compiled code: CurOp null inside a block
            Assert.False(cpu.IsQuiescentFor(DataGfn, DataGfn));
            cpu.State->CurBlock = null;
            cpu.State->AccessVa = Vcpu.AccessUnknown;     // decoding: a fetch pointer may be live
            Assert.False(cpu.IsQuiescentFor(DataGfn, DataGfn));
        }
    }

    [Fact]
    public void LoadChecked_EntryShotDownBetweenTheLoadAndTheCheck_DiscardsTheValue()
    {
        var (f, cpu) = RanTouchingTwoPages();
        using (f)
        {
            f.Write(CpuFixture.DataBase, BitConverter.GetBytes(0x1122_3344_5566_7788UL));
            CpuState* s = cpu.State;
            TlbEntry* e = Mem.Entry(s->TlbRead, CpuFixture.DataBase);
            ulong tag = Mem.Tag(s, CpuFixture.DataBase, 8);
            Assert.Equal(tag, e->Tag);
            byte* p = (byte*)(CpuFixture.DataBase + (ulong)e->Addend);   // the pointer the parked load took
            Assert.True(Mem.LoadChecked<S64>(e, tag, p, out ulong v));
            Assert.Equal(0x1122_3344_5566_7788UL, v);
            cpu.ShootDown(DataGfn, DataGfn);              // the invalidator, while the load is in flight
            Assert.False(Mem.LoadChecked<S64>(e, tag, p, out _));
            Assert.False(Mem.TryRead<S64>(s, CpuFixture.DataBase, out _));
        }
    }

    [Fact]
    public void IsQuiescentFor_SlowPathStackOpOrNoBlock_IsNotDone_AndAQuietOpIs()
    {
        var (f, cpu, b) = RanMovsThenPush();
        using (f)
        {
            Park(cpu, b, 2, Vcpu.AccessUnknown);          // inside a slow path: two pages, or a fill
            Assert.False(cpu.IsQuiescentFor(DataGfn + 5, DataGfn + 5));
            Park(cpu, b, 3, CpuFixture.DataBase);         // push: not a plain mov
            Assert.False(cpu.IsQuiescentFor(DataGfn + 5, DataGfn + 5));
            Park(cpu, b, 0, CpuFixture.DataBase);         // quiet: done whatever it published
            Assert.True(cpu.IsQuiescentFor(DataGfn, DataGfn));
            Unpark(cpu);
            Assert.False(cpu.IsQuiescentFor(DataGfn + 5, DataGfn + 5));
        }
    }

    /// <summary>Runs <paramref name="body"/>, then a vmcall whose handler reads what the vCPU had published.</summary>
    private static ulong PublishedAfter(Action<Assembler> body)
    {
        using var f = new CpuFixture();
        ulong published = 0;
        f.Exits.OnHypercall = v => published = v.State->AccessVa;
        var (exit, _) = f.Run(a =>
        {
            body(a);
            a.vmcall();
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        return published;
    }

    [Fact]
    public void MemAccess_HitPublishesItsAddress_ASlowStorePublishesUnknown_AndASlowLoadEndsTranslating()
    {
        Assert.Equal(CpuFixture.DataBase + 8, PublishedAfter(a =>
        {
            a.mov(rbx, CpuFixture.DataBase);
            a.mov(rax, __qword_ptr[rbx]);         // miss: the slow path fills the entry
            a.mov(rax, __qword_ptr[rbx + 8]);     // hit
        }));
        Assert.Equal(Vcpu.AccessUnknown, PublishedAfter(a =>
        {
            a.mov(rbx, CpuFixture.DataBase + 0x3000);
            a.mov(__qword_ptr[rbx], rax);         // miss
        }));
        Assert.Equal(Vcpu.AccessTranslating, PublishedAfter(a =>
        {
            a.mov(rbx, CpuFixture.DataBase + 0x3000);
            a.mov(rax, __qword_ptr[rbx]);         // miss: a checked read, done with every pointer but the filled entry's
        }));
    }

    public static TheoryData<string> PlainMovForms() =>
        ["mov rax, m", "mov eax, m", "mov ax, m", "mov al, m", "mov m, rax", "mov m, eax", "mov m, ax", "mov m, al", "mov m, imm32", "mov m, imm8"];

    private static void EmitPlainMov(Assembler a, string form, AssemblerRegister64 b, int disp)
    {
        switch (form)
        {
            case "mov rax, m": a.mov(rax, __qword_ptr[b + disp]); break;
            case "mov eax, m": a.mov(eax, __dword_ptr[b + disp]); break;
            case "mov ax, m": a.mov(ax, __word_ptr[b + disp]); break;
            case "mov al, m": a.mov(al, __byte_ptr[b + disp]); break;
            case "mov m, rax": a.mov(__qword_ptr[b + disp], rax); break;
            case "mov m, eax": a.mov(__dword_ptr[b + disp], eax); break;
            case "mov m, ax": a.mov(__word_ptr[b + disp], ax); break;
            case "mov m, al": a.mov(__byte_ptr[b + disp], al); break;
            case "mov m, imm32": a.mov(__dword_ptr[b + disp], 7); break;
            case "mov m, imm8": a.mov(__byte_ptr[b + disp], 7); break;
            default: throw new ArgumentException(form);
        }
    }

    /// <summary>
    /// The narrow answer trusts what a plain mov publishes: each form the decoder binds to a
    /// handler in the narrow list must publish the address it accesses (a handler that probed
    /// the TLB without publishing would make IsQuiescentFor unsound).
    /// </summary>
    [Theory]
    [MemberData(nameof(PlainMovForms))]
    public void PlainMov_BoundToANarrowHandler_PublishesItsAddress(string form)
    {
        using var f = new CpuFixture();
        ulong published = 0;
        f.Exits.OnHypercall = v => published = v.State->AccessVa;
        var (exit, cpu) = f.Run(a =>
        {
            a.mov(rbx, CpuFixture.DataBase);
            EmitPlainMov(a, form, rbx, 0);        // miss: fills the entry
            EmitPlainMov(a, form, rbx, 0x10);     // hit
            a.vmcall();
            a.hlt();
        });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(CpuFixture.DataBase + 0x10, published);
        Block* b = CodeCache.For(f.Memory).Lookup(CpuFixture.CodeBase, CpuFixture.CodeBase);
        Assert.True(b != null);
        Assert.True(Vcpu.IsNarrowHandler((nint)Block.OpsOf(b)[2].H), form);
    }

    /// <summary>
    /// The vCPU parked inside its store to page <paramref name="a"/> + 1: a flush of that page,
    /// run through <paramref name="onThread"/> on a thread of its own, must not finish while the
    /// vCPU may still store through its pointer, and finishes once it runs again and acknowledges.
    /// </summary>
    private static ShootdownCounts FlushOfA1WaitsUntilTheParkedVcpuAcknowledges(Vcpu cpu, ulong a, Action<Action> onThread)
    {
        var counts = new ShootdownCounts();
        VcpuLink[] vcpus = [cpu.Link];
        var flush = new Thread(() => onThread(() => VcpuShootdown.FlushLocked(vcpus, null, ref counts, ulong.MaxValue, a + 1, a + 1)));
        flush.Start();
        Assert.False(flush.Join(TimeSpan.FromMilliseconds(100)));   // it may still store through its pointer
        Assert.True(cpu.Link.RemoteGeneration < cpu.Link.PostedGeneration);
        Unpark(cpu);
        cpu.Link.TakeRequests();                      // the vCPU runs again and acknowledges
        cpu.Link.TakeFlushRanges(new (ulong, ulong)[VcpuLink.MaxPendingRanges]);
        cpu.Link.AcknowledgeFlush();
        Assert.True(flush.Join(TimeSpan.FromSeconds(20)));
        return counts;
    }

    [Fact]
    public void FlushLocked_VcpuParkedInsideAStoreToPageA1_IsShotDownForPageA_AndWaitedForOnPageA1()
    {
        var (f, cpu, b) = RanMovsThenPush();
        using (f)
        {
            const ulong A = DataGfn;
            VcpuLink[] vcpus = [cpu.Link];
            cpu.Link.EnterGuest();                        // in guest mode, descheduled inside op 2's store to page A + 1
            Park(cpu, b, 2, CpuFixture.DataBase + 0x1000);
            var counts = new ShootdownCounts();
            VcpuShootdown.FlushLocked(vcpus, null, ref counts, ulong.MaxValue, A, A);
            Assert.Equal(1, counts.ShotDown);
            Assert.Equal(cpu.Link.PostedGeneration, cpu.Link.RemoteGeneration);
            Assert.False(cpu.Maps(A, HostPage(f, CpuFixture.DataBase)));
            var onA = FlushOfA1WaitsUntilTheParkedVcpuAcknowledges(cpu, A, flush => flush());
            Assert.Equal(1, onA.Waited);
            cpu.Link.ExitGuest();
        }
    }

    /// <summary>
    /// A vCPU about to run <c>add rax, 1; add rbx, 1; jmp</c> (ops 0, 1, 2) forever, on a code cache
    /// of the given tier whatever TOYVMM_TIER_DEFAULT says: interpreted, or compiled with regions
    /// at the loop's second round, on the vCPU thread.
    /// </summary>
    private static Vcpu RegisterLoop(CpuFixture f, bool compiled)
    {
        var cache = CodeCache.For(f.Memory);
        cache.TierSynchronous = true;
        cache.TierThreshold = compiled ? 2 : -1;
        f.Write(CpuFixture.CodeBase, CpuFixture.Assemble(a =>
        {
            var l = a.CreateLabel();
            a.Label(ref l);
            a.add(rax, 1);
            a.add(rbx, 1);
            a.jmp(l);
        }));
        return f.NewVcpu();
    }

    /// <summary>Bounds a wait on another thread so that a broken protocol fails the test instead of hanging it (not a time asserted).</summary>
    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(2);

    /// <summary>
    /// The interpreter runs a register loop at quiet ops: after a process-wide barrier the vCPU is
    /// seen quiescent (step 3 completes its flush from outside). Sampled until it is seen, or
    /// until the vCPU has retired a million instructions and a thousand samples were taken
    /// (bounded by progress, not by tries: under load the sampler may run while the vCPU waits
    /// for a core, stopped before its first block). Stopped, it is not quiescent.
    /// </summary>
    [Fact]
    public void IsQuiescent_InterpretedRegisterLoopSeenAfterAProcessWideBarrier_IsQuiet_AndAStoppedVcpuIsNot()
    {
        using var f = new CpuFixture();
        var cpu = RegisterLoop(f, compiled: false);
        Assert.False(cpu.IsQuiescent);   // not in a block
        bool seen = false;
        var t = new Thread(() =>
        {
            while (cpu.Link.Mode != VcpuMode.InGuest) Thread.Yield();
            long from = cpu.Progress;
            var bound = System.Diagnostics.Stopwatch.StartNew();
            for (int tries = 0; !seen && (tries < 1000 || cpu.Progress - from < 1_000_000) && bound.Elapsed < Bound; tries++)
            {
                Interlocked.MemoryBarrierProcessWide();
                seen = cpu.IsQuiescent;
            }
            cpu.Link.RequestStop();
        });
        t.Start();
        Assert.Equal(VcpuExitKind.StopRequested, cpu.Run().Kind);
        t.Join();
        Assert.Equal(0, CodeCache.For(f.Memory).TierStats.BlocksCompiled);
        Assert.True(seen);
        Assert.False(cpu.IsQuiescent);
    }

    /// <summary>
    /// Compiled code keeps <c>CurOp</c> null while it runs (it publishes no op and no address), so
    /// the same loop compiled is not quiescent inside its method: it is seen quiet only at op 0
    /// before the method's first store (entered from the run loop or a chain) or at the jmp
    /// after its last (leaving for the run loop), never at the op between, which only the
    /// interpreted rounds before the compile name. Its flush is done instead by its own
    /// acknowledgement: a region polls the link's requests at every edge and leaves for the run
    /// loop, no kick needed (step 2), and it runs on. Stopped, it is not quiescent.
    /// </summary>
    [Fact]
    public void IsQuiescent_CompiledRegisterLoop_IsQuietOnlyOnEnteringOrLeavingItsMethod_AndAcknowledgesAFlushItself()
    {
        using var f = new CpuFixture();
        var cpu = RegisterLoop(f, compiled: true);
        var cache = CodeCache.For(f.Memory);
        nint block = 0;
        int samples = 0, atOp1 = 0;
        long ticket = -1, acksBefore = 0, progressAtAck = -1, progressAfterAck = -1;
        bool flushed = false;
        var t = new Thread(() =>
        {
            var bound = System.Diagnostics.Stopwatch.StartNew();
            while (cpu.Link.Mode != VcpuMode.InGuest) Thread.Yield();
            // Compiled and past the rounds interpreted before (the run loop's entries count
            // Progress: compiled regions store it when they leave).
            while (cache.TierStats.BlocksCompiled == 0 && bound.Elapsed < Bound) Thread.Yield();
            long compiledAt = cpu.Progress;
            while (cpu.Progress - compiledAt < 100_000 && bound.Elapsed < Bound) Thread.Yield();
            Block* b = cache.Lookup(CpuFixture.CodeBase, CpuFixture.CodeBase);
            block = (nint)b;
            long from = cpu.Progress;
            for (; (samples < 1000 || cpu.Progress - from < 1_000_000) && bound.Elapsed < Bound; samples++)
            {
                Interlocked.MemoryBarrierProcessWide();
                Op* op = (Op*)Volatile.Read(ref *(nint*)&cpu.State->CurOp);
                if (cpu.IsQuiescent && op == Block.OpsOf(b) + 1 && Volatile.Read(ref *(nint*)&cpu.State->CurOp) == (nint)op) atOp1++;
            }
            acksBefore = cpu.Link.FlushAcks;
            ticket = cpu.Link.RequestFlush(DataGfn, DataGfn);
            while (!(flushed = cpu.Link.IsFlushed(ticket)) && bound.Elapsed < Bound) Thread.Yield();
            progressAtAck = cpu.Progress;
            while ((progressAfterAck = cpu.Progress) == progressAtAck && bound.Elapsed < Bound) Thread.Yield();
            cpu.Link.RequestStop();
        });
        t.Start();
        Assert.Equal(VcpuExitKind.StopRequested, cpu.Run().Kind);
        t.Join();
        Assert.True(block != 0);
        Assert.NotEqual((nint)ToyVmm.Cpu.Tier.TierEntry.CountHandler, (nint)Block.OpsOf((Block*)block)->H);   // op 0 runs the compiled method
        Assert.True(samples >= 1000);
        Assert.Equal(0, atOp1);
        Assert.True(ticket > 0);                                      // posted while it ran in guest mode
        Assert.True(flushed);
        Assert.True(cpu.Link.FlushAcks > acksBefore);                 // by the vCPU itself
        Assert.True(progressAfterAck > progressAtAck);                // and it ran on
        Assert.False(cpu.IsQuiescent);
    }
}
