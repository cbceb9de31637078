using Iced.Intel;
using ToyVmm.Cpu;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Tests.Cpu;
using ToyVmm.Vm;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Vm;

/// <summary>
/// Locked read-modify-writes on a guest page table the shadow MMU write-protects
/// (vmm/Cpu/Ops/Atomic.cs, mmu/LOCKING.md "The vCPU side"), two vCPUs on the real host
/// with the checker on: the locked op must be one interlocked operation on the
/// backing frame, atomic against the other vCPU's walk setting accessed/dirty bits
/// in the same entry, and a trapped write under the split lock must not deadlock
/// with a vCPU waiting for that lock.
/// </summary>
public sealed unsafe class ShadowLockedRmwTests
{
    private const ulong Ram = 16UL << 20;
    private const ulong CodeA = 0x100000, CodeB = 0x110000;
    private const ulong Flags = 0x300000;          // +0: round released by A, +8: round done by B, +16: B's failed round
    private const ulong Target = 0x800000;         // the 2 MiB page whose directory entry the vCPUs share
    private const ulong PteA = 0x20, PteD = 0x40, Soft = 0x200;   // Soft: bit 9, ignored by the walk
    private const ulong CountUnit = 1UL << 52;     // bits 52-62 ignored by the walk: A's counter
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    /// <summary>Two vCPUs over a shadow MMU on the boot tables, their programs loaded; not yet running.</summary>
    private sealed class TwoVcpus : IDisposable
    {
        public readonly HostBackedMemory Backing;
        public readonly BootLayout Layout = BootLayout.Create(Ram, 2);
        public readonly Vcpu A, B;
        private readonly List<Thread> _threads = [];

        public TwoVcpus(Action<Assembler> programA, Action<Assembler> programB)
        {
            Backing = new HostBackedMemory(Ram, 2, new GuestMemoryConfig(Ram, Check: true, Mmu: SecondaryMmuKind.Shadow));
            using (var writer = new GuestPhysicalWriter(Backing.Mmu))
            {
                writer.Write(new Gpa(CodeA), CpuFixture.Assemble(programA, CodeA));
                writer.Write(new Gpa(CodeB), CpuFixture.Assemble(programB, CodeB));
                BootState.BuildTables(writer, Layout);
            }
            var links = new[] { new VcpuLink(0), new VcpuLink(1) };
            foreach (var link in links) Backing.Mmu.AttachVcpu(link);
            Backing.Checker!.WatchVcpus(() => links);
            A = new Vcpu(0, Backing.Mmu, links[0], new TestExits());
            B = new Vcpu(1, Backing.Mmu, links[1], new TestExits());
        }

        /// <summary>Guest-physical address of the boot tables' directory entry that maps <paramref name="va"/> (a 2 MiB page).</summary>
        public ulong PdeOf(ulong va) => Layout.FirstPageDirectory.Value + (va >> 21) * 8;

        public Thread Start(Vcpu vcpu, ulong entry, Action<VcpuExit> done)
        {
            var thread = new Thread(() =>
            {
                BootState.ApplyEntryState(vcpu, Layout, entry);
                done(vcpu.Run(2_000_000_000));
            }) { IsBackground = true };
            lock (_threads) _threads.Add(thread);
            thread.Start();
            return thread;
        }

        /// <summary>Run both vCPUs from their programs to their hlt; fails the test if either does not end in time (a deadlock) or ends otherwise.</summary>
        public void RunBoth(string whatHangs)
        {
            VcpuExit exitA = default, exitB = default;
            var ta = Start(A, CodeA, e => exitA = e);
            var tb = Start(B, CodeB, e => exitB = e);
            bool finished = ta.Join(Patience) & tb.Join(Patience);
            Assert.True(finished, $"the two vCPUs did not finish: {whatHangs}");
            Assert.Equal(VcpuExitKind.Halted, exitA.Kind);
            Assert.Equal(VcpuExitKind.Halted, exitB.Kind);
        }

        public ulong ReadU64(ulong gpa)
        {
            var bytes = new byte[8];
            using (var reader = new GuestPhysicalWriter(Backing.Mmu)) reader.Read(new Gpa(gpa), bytes);
            return BitConverter.ToUInt64(bytes);
        }

        /// <summary>Tears down, unless a vCPU thread is still running (a failed test that deadlocked): then it leaks rather than hang.</summary>
        public void Dispose()
        {
            lock (_threads)
                if (_threads.Any(t => t.IsAlive)) return;
            A.Dispose();
            B.Dispose();
            Backing.Dispose();
        }
    }

    [Fact]
    [Trait("Category", "Long")]
    public void LockedRmw_OnAShadowedPteWhileAnotherVcpuWalksIt_KeepsBothUpdates()
    {
        const int rounds = 150, incrementsPerRound = 4;
        ulong pde = 0;
        // A, per round: clear A/D and the soft bit of the entry (lock and), release B, then
        // while B walks through the entry, add to its counter with lock add and with a
        // lock cmpxchg loop, and set the soft bit (lock or); wait for B.
        void ProgramA(Assembler a)
        {
            var round = a.CreateLabel(); var inc = a.CreateLabel(); var cas = a.CreateLabel(); var wait = a.CreateLabel();
            a.mov(rbx, pde);
            a.mov(rsi, Flags);
            a.mov(r13, CountUnit);
            a.mov(r12, 1UL);
            a.Label(ref round);
            a.@lock.and(__qword_ptr[rbx], unchecked((int)~(PteA | PteD | Soft)));
            a.mov(__qword_ptr[rsi], r12);
            a.mov(rcx, (ulong)incrementsPerRound / 2);
            a.Label(ref inc);
            a.@lock.add(__qword_ptr[rbx], r13);
            a.mov(rax, __qword_ptr[rbx]);
            a.Label(ref cas);
            a.lea(rdx, __qword_ptr[rax + r13]);
            a.@lock.cmpxchg(__qword_ptr[rbx], rdx);
            a.jne(cas);
            a.dec(rcx);
            a.jne(inc);
            a.@lock.or(__qword_ptr[rbx], (int)Soft);
            a.Label(ref wait);
            a.pause();
            a.cmp(__qword_ptr[rsi + 8], r12);
            a.jne(wait);
            a.inc(r12);
            a.cmp(r12, rounds + 1);
            a.jne(round);
            a.hlt();
        }
        // B, per round: wait for A's release, write the page (A's lock and zapped the shadow
        // link, so the write misses and walks, setting A and D in the entry), then check that
        // the entry still has both (A's concurrent ops never clear them): else note the round.
        void ProgramB(Assembler a)
        {
            var wait = a.CreateLabel(); var ok = a.CreateLabel();
            a.mov(rbx, pde);
            a.mov(rsi, Flags);
            a.mov(rdi, Target);
            a.mov(r12, 1UL);
            a.Label(ref wait);
            a.pause();
            a.cmp(__qword_ptr[rsi], r12);
            a.jne(wait);
            a.mov(__qword_ptr[rdi], r12);
            a.mov(rax, __qword_ptr[rbx]);
            a.and(rax, (int)(PteA | PteD));
            a.cmp(rax, (int)(PteA | PteD));
            a.je(ok);
            a.mov(__qword_ptr[rsi + 16], r12);
            a.Label(ref ok);
            a.mov(__qword_ptr[rsi + 8], r12);
            a.inc(r12);
            a.cmp(r12, rounds + 1);
            a.jne(wait);
            a.hlt();
        }
        pde = BootLayout.Create(Ram, 2).FirstPageDirectory.Value + (Target >> 21) * 8;
        using var vms = new TwoVcpus(ProgramA, ProgramB);
        Assert.Equal(pde, vms.PdeOf(Target));
        vms.RunBoth("a deadlock");
        Assert.Equal(0UL, vms.ReadU64(Flags + 16));   // no round in which B's A/D bits were lost
        ulong entry = vms.ReadU64(pde);
        Assert.Equal((ulong)rounds * incrementsPerRound, (entry >> 52) & 0x7FF);   // every one of A's increments
        Assert.Equal(PteA | PteD | Soft, entry & (PteA | PteD | Soft));            // B's last walk and A's last or
        Assert.True(vms.Backing.ShadowCounts!.Value.WriteProtectTraps >= rounds, "the locked ops must have trapped");
        Assert.Equal(0, vms.Backing.Checker!.ViolationCount);
    }

    [Fact]
    public void LockedOr_WhenAnotherVcpuWalksBetweenItsTranslationAndItsOp_KeepsTheWalksBits()
    {
        // Forced interleaving of the trap path: A's lock or on the shadowed entry has its
        // pointer (the page table traps) and is stopped before the op; B then walks through
        // the entry (its write sets A and D) and halts; A's op goes on. An op that read the
        // entry before the walk and wrote it back after would lose B's bits.
        ulong pde = BootLayout.Create(Ram, 2).FirstPageDirectory.Value + (Target >> 21) * 8;
        using var vms = new TwoVcpus(a =>
        {
            a.mov(rbx, pde);
            a.@lock.and(__qword_ptr[rbx], unchecked((int)~(PteA | PteD)));
            a.@lock.or(__qword_ptr[rbx], (int)Soft);
            a.hlt();
        }, a =>
        {
            a.mov(rdi, Target);
            a.mov(__qword_ptr[rdi], rdi);
            a.hlt();
        });
        VcpuExit exitA = default, exitB = default;
        Thread? tb = null;
        bool bDone = false;
        int traps = 0;
        vms.A.BeforeSlowWriteHook = gpa =>
        {
            if (gpa >> 12 != pde >> 12 || ++traps != 2) return;   // the second locked op: the or
            tb = vms.Start(vms.B, CodeB, e => exitB = e);
            bDone = tb.Join(Patience);
        };
        var ta = vms.Start(vms.A, CodeA, e => exitA = e);
        Assert.True(ta.Join(Patience), "vCPU A did not finish");
        Assert.Equal(2, traps);
        Assert.True(bDone, "vCPU B could not walk while A held its trapped pointer");
        Assert.Equal(VcpuExitKind.Halted, exitA.Kind);
        Assert.Equal(VcpuExitKind.Halted, exitB.Kind);
        Assert.Equal(PteA | PteD | Soft, vms.ReadU64(pde) & (PteA | PteD | Soft));
        Assert.Equal(0, vms.Backing.Checker!.ViolationCount);
    }

    [Fact]
    public void SplitLockedAdd_AcrossTwoShadowedTablesOnTwoVcpus_NeitherWaitsForTheOther()
    {
        // A locked add that crosses from the end of the PDPT page into the first directory
        // entry takes the split lock, and its write traps on both tables: the trap zaps a
        // link and shoots every vCPU down under the lock. The other vCPU, blocked on the
        // lock, must not be one the shootdown waits for.
        const int iterations = 300;
        ulong crossing = BootLayout.Create(Ram, 2).FirstPageDirectory.Value - 4;
        void Program(Assembler a)
        {
            var loop = a.CreateLabel();
            a.mov(rbx, crossing);
            a.mov(rcx, (ulong)iterations);
            a.Label(ref loop);
            a.@lock.add(__qword_ptr[rbx], 0);
            a.dec(rcx);
            a.jne(loop);
            a.hlt();
        }
        using var vms = new TwoVcpus(Program, Program);
        vms.RunBoth("a deadlock on the split lock");
        Assert.True(vms.Backing.ShadowCounts!.Value.WriteProtectTraps >= 2 * iterations, "the split-locked writes must have trapped");
        Assert.Equal(0, vms.Backing.Checker!.ViolationCount);
    }
}
