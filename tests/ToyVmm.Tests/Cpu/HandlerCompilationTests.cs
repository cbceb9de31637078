using System.Reflection;
using ToyVmm.Cpu;
using Xunit;

namespace ToyVmm.Tests.Cpu;

/// <summary>
/// How the interpreter's handlers are compiled: every handler the binder can bind is fully
/// optimised at its first call (no tier-0 body running the guest's first hundreds of
/// milliseconds), and the decoder's one-time set-up can run off the vCPU thread.
/// </summary>
public class HandlerCompilationTests
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
    public void DecoderWarmUp_Run_DecodesAndFindsABinderForEveryWarmUpForm()
    {
        // mov r, m; add r, imm; cmp; jne; call; ret: all bound by the interpreter.
        Assert.Equal(6, DecoderWarmUp.Run());
    }
}
