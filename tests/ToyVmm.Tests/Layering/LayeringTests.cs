using System.Reflection;
using NetArchTest.Rules;
using ToyVmm.Cpu;
using ToyVmm.Mmu.Secondary;
using Xunit;

namespace ToyVmm.Tests.Layering;

/// <summary>
/// The dependency directions of docs/DESIGN.md "Layers", read from the compiled
/// assemblies (type signatures and method bodies): a wrong reference fails here.
/// </summary>
public class LayeringTests
{
    private static readonly Assembly Mmu = typeof(EptMmu).Assembly;
    private static readonly Assembly Vmm = typeof(Vcpu).Assembly;

    /// <summary>The types of <paramref name="layer"/> that use <paramref name="forbidden"/>, each with why.</summary>
    private static string[] Offenders(Assembly assembly, string layer, string forbidden)
    {
        var result = Types.InAssembly(assembly)
            .That().ResideInNamespace(layer)
            .ShouldNot().HaveDependencyOnAny(forbidden)
            .GetResult();
        return result.IsSuccessful ? [] : [.. result.FailingTypes.Select(t => $"{t.FullName}: {t.Explanation}")];
    }

    [Theory]
    [InlineData("ToyVmm.Mmu.Host", "ToyVmm.Mmu.Secondary")]
    [InlineData("ToyVmm.Mmu.Notifiers", "ToyVmm.Mmu.Host")]
    [InlineData("ToyVmm.Mmu.Notifiers", "ToyVmm.Mmu.Secondary")]
    // Grants sit on the secondary side: the host, the notifiers and the MMUs know nothing of them,
    // and they reach the owner's host only through IHostMemory, as a secondary MMU does.
    [InlineData("ToyVmm.Mmu.Grants", "ToyVmm.Mmu.Host")]
    [InlineData("ToyVmm.Mmu.Host", "ToyVmm.Mmu.Grants")]
    [InlineData("ToyVmm.Mmu.Notifiers", "ToyVmm.Mmu.Grants")]
    [InlineData("ToyVmm.Mmu.Secondary", "ToyVmm.Mmu.Grants")]
    public void MmuLayer_DoesNotUseTheLayerAboveOrBeside(string layer, string forbidden) =>
        Assert.Empty(Offenders(Mmu, layer, forbidden));

    /// <summary>The secondary side reaches the host through its binding only; the MMUs are written against IHostMemory.</summary>
    [Fact]
    public void Secondary_UsesTheHostOnlyThroughTheBinding() =>
        Assert.Equal(["ToyVmm.Mmu.Secondary.SecondaryHostBinding"], Offenders(Mmu, "ToyVmm.Mmu.Secondary", "ToyVmm.Mmu.Host").Select(o => o[..o.IndexOf(':')]));

    [Fact]
    public void Cpu_DoesNotUseTheHost() => Assert.Empty(Offenders(Vmm, "ToyVmm.Cpu", "ToyVmm.Mmu.Host"));

    /// <summary>The rule can fail: the dependencies that are meant to exist are found.</summary>
    [Theory]
    [InlineData("ToyVmm.Mmu.Secondary", "ToyVmm.Mmu.Host", "ToyVmm.Mmu.Secondary.SecondaryHostBinding")]
    [InlineData("ToyVmm.Mmu.Secondary", "ToyVmm.Mmu.Notifiers", "ToyVmm.Mmu.Secondary.SecondaryMmuCore")]
    [InlineData("ToyVmm.Mmu.Host", "ToyVmm.Mmu.Notifiers", "ToyVmm.Mmu.Host.HostAddressSpace")]
    [InlineData("ToyVmm.Mmu.Grants", "ToyVmm.Mmu.Secondary", "ToyVmm.Mmu.Grants.GrantView")]
    public void Offenders_RealDependency_AreNamed(string layer, string uses, string type) =>
        Assert.Contains(Offenders(Mmu, layer, uses), o => o.StartsWith(type + ":", StringComparison.Ordinal));

    [Fact]
    public void Offenders_CpuUsesTheSecondaryAccessSide_IsNamed() =>
        Assert.Contains(Offenders(Vmm, "ToyVmm.Cpu", "ToyVmm.Mmu.Secondary"), o => o.StartsWith("ToyVmm.Cpu.Vcpu:", StringComparison.Ordinal));
}
