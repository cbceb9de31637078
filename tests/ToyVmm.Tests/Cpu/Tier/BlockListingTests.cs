using ToyVmm.Cpu;
using ToyVmm.Cpu.Tier;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu.Tier;

/// <summary>The IL the compiler emits for a small loop block (the example in vmm/Cpu/README.md).</summary>
public sealed unsafe class BlockListingTests(Xunit.Abstractions.ITestOutputHelper output)
{
    [Fact]
    public void Listing_LoopBlock_KeepsRegistersInLocalsAndLoopsInside()
    {
        using var f = new CpuFixture();
        var cache = CodeCache.For(f.Memory);
        cache.TierThreshold = 0;
        // sum += [rbx + rcx*8]; rcx++ while rcx != rdx: one block that branches to itself.
        var (exit, cpu) = f.Run(a =>
        {
            var loop = a.CreateLabel();
            a.Label(ref loop);
            a.add(rax, __qword_ptr[rbx + rcx * 8]);
            a.add(rcx, 1);
            a.cmp(rcx, rdx);
            a.jne(loop);
            a.hlt();
        }, setup: v => { v.SetGpr(Gpr.Rbx, CpuFixture.DataBase); v.SetGpr(Gpr.Rcx, 0); v.SetGpr(Gpr.Rdx, 4); v.SetGpr(Gpr.Rax, 0); });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Block* b = cache.Lookup(CpuFixture.CodeBase, CpuFixture.CodeBase);
        Assert.True(b != null);
        // The live block's op 0 holds the compiled code; the snapshot puts op 0's own handler back.
        var ops = new Op[b->NumOps];
        for (int i = 0; i < ops.Length; i++) ops[i] = Block.OpsOf(b)[i];
        ops[0].H = b->Entry0;
        string? listing = BlockCompiler.Listing(b, ops);
        Assert.NotNull(listing);
        output.WriteLine(listing);
        Assert.Contains("call TierHelpers.Chain", listing);
        Assert.Contains("bge L", listing);                               // the self-loop's limit check
        Assert.Contains("call TierHelpers.Limit", listing);              // the compiled code's own budget per run-loop entry
        Assert.Contains("HasRequests", listing);                         // link requests: polled at every in-region edge
        Assert.Contains("call TierHelpers.ReadSlow", listing);           // the TLB miss, out of line
        Assert.Equal(4, BlockCompiler.PrefixLength(ops));
    }
}
