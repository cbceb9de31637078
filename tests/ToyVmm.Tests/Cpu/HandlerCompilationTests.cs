using System.Reflection;
using ToyVmm.Cpu;
using ToyVmm.Cpu.Ops;
using ToyVmm.Cpu.Tier;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// How the interpreter's handlers are compiled: every handler the binder can bind is fully
/// optimised at its first call (no tier-0 body running the guest's first hundreds of
/// milliseconds), and the decoder's one-time set-up can run off the vCPU thread.
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

    [Fact]
    public void Handlers_EveryBindableHandler_IsAggressivelyOptimized()
    {
        var handlers = Handlers().ToList();
        Assert.True(handlers.Count > 150, $"found only {handlers.Count} handlers: the reflection no longer sees them");
        var missing = handlers
            .Where(m => (m.MethodImplementationFlags & MethodImplAttributes.AggressiveOptimization) == 0)
            .Select(m => $"{m.DeclaringType!.Name}.{m.Name}")
            .ToList();
        Assert.True(missing.Count == 0, "handlers without [MethodImpl(MethodImplOptions.AggressiveOptimization)]: " + string.Join(", ", missing));
    }

    [Fact]
    public void HandlerAddress_AfterTheHandlerRan_IsStillTheAddressTheTierKnows()
    {
        // A handler that is not tiered has no code versions; its address as the binder stores it
        // (&Method, taken before its first call) must stay the one the translation tier's table
        // read by reflection, also once the handler has been compiled and run.
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
