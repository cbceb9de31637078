using System.Reflection;
using System.Xml.Linq;
using ToyVmm.Cpu;
using ToyVmm.Cpu.Ops;
using ToyVmm.Cpu.Tier;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// How the interpreter's handlers are compiled: no handler runs a tier-0 body for the guest's
/// first hundreds of milliseconds (integer handlers are precompiled by ReadyToRun, SSE/MMX
/// handlers fully optimised at their first call), and the decoder's one-time set-up can run
/// off the vCPU thread.
/// </summary>
public unsafe class HandlerCompilationTests
{
    private static IEnumerable<MethodInfo> Handlers() =>
        typeof(Vcpu).Assembly.GetTypes()
            .Where(t => t.Namespace == "ToyVmm.Cpu.Ops")
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            .Where(m => !m.IsPrivate && IsHandlerSignature(m));

    private static bool IsHandlerSignature(MethodInfo m)
    {
        var p = m.GetParameters();
        return m.ReturnType.IsPointer && m.ReturnType.GetElementType()?.Name == "Op"
            && p.Length == 2 && p[0].ParameterType.GetElementType()?.Name == "CpuState" && p[1].ParameterType.GetElementType()?.Name == "Op";
    }

    /// <summary>
    /// SSE and MMX handlers (classes <c>Sse</c> and <c>Mmx</c>) are compiled fully optimised at
    /// their first call; every other handler is left to ReadyToRun, which never precompiles a
    /// method marked AggressiveOptimization (bench/RESULTS.md, "Ahead-of-time compiled VMM").
    /// </summary>
    private static bool IsVectorHandler(MethodInfo m) => m.DeclaringType!.Name is "Sse" or "Mmx";

    private static bool IsAggressivelyOptimized(MethodInfo m) =>
        (m.MethodImplementationFlags & MethodImplAttributes.AggressiveOptimization) != 0;

    [Fact]
    public void Handlers_SseAndMmxHandlers_AreAggressivelyOptimized()
    {
        var vector = Handlers().Where(IsVectorHandler).ToList();
        Assert.True(vector.Count > 30, $"found only {vector.Count} SSE/MMX handlers: the reflection no longer sees them");
        var missing = vector.Where(m => !IsAggressivelyOptimized(m)).Select(m => $"{m.DeclaringType!.Name}.{m.Name}").ToList();
        Assert.True(missing.Count == 0, "SSE/MMX handlers without [MethodImpl(MethodImplOptions.AggressiveOptimization)]: " + string.Join(", ", missing));
    }

    [Fact]
    public void Handlers_IntegerHandlers_AreLeftToReadyToRun()
    {
        var integer = Handlers().Where(m => !IsVectorHandler(m)).ToList();
        Assert.True(integer.Count > 100, $"found only {integer.Count} integer handlers: the reflection no longer sees them");
        var marked = integer.Where(IsAggressivelyOptimized).Select(m => $"{m.DeclaringType!.Name}.{m.Name}").ToList();
        Assert.True(marked.Count == 0, "integer handlers marked AggressiveOptimization, so never precompiled by ReadyToRun: " + string.Join(", ", marked));
    }

    [Fact]
    public void Program_Project_PublishesReadyToRunWithoutDynamicPgo()
    {
        // The policy above only pays with the published program precompiled, and a hot
        // precompiled handler re-compiled straight to tier 1 (no instrumented tier between).
        var project = XDocument.Load(Path.Combine(GuestFiles.RepoRoot, "vmm", "ToyVmm.csproj"));
        string? Property(string name) => project.Descendants(name).SingleOrDefault()?.Value.Trim();
        Assert.Equal("true", Property("PublishReadyToRun"));
        Assert.Equal("false", Property("TieredPGO"));
    }

    [Fact]
    public void HandlerAddress_AfterTheHandlerRan_IsStillTheAddressTheTierKnows()
    {
        // A handler's address as the binder stores it (&Method, taken before its first call) must
        // stay the one the translation tier's table read by reflection, also once the handler has
        // been compiled and run (the stable entry point, whatever code version it leads to).
        using var f = new CpuFixture();
        var (exit, cpu) = f.Run(a => { a.mov(rax, 6); a.mov(rbx, 7); a.imul(rax, rbx); a.hlt(); });
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(42UL, cpu.GetGpr(Gpr.Rax));
        Assert.True(HandlerTable.TryGet((nint)(delegate*<CpuState*, Op*, Op*>)&MulDiv.Imul2R<S64>, out var imul));
        Assert.Equal(CKind.Imul, imul.Kind);
    }

    [Fact]
    public void DecoderWarmUp_Run_DecodesAndFindsABinderForEveryWarmUpForm()
    {
        // mov r, m; add r, imm; cmp; jne; call; ret: all bound by the interpreter.
        Assert.Equal(6, DecoderWarmUp.Run());
    }
}
