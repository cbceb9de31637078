using System.Text.Json;
using ToyVmm.Mmu.Metrics;

namespace ToyVmm.Report;

/// <summary>
/// The names the report, the trace and the table give the measurement kinds: the
/// camelCase enum names (<c>zeroFill</c>, <c>pageOut</c>), so one key means the same
/// thing in every output.
/// </summary>
public static class ReportNames
{
    public static string Of(FaultKind kind) => JsonNamingPolicy.CamelCase.ConvertName(kind.ToString());
    public static string Of(InvalidateCause cause) => JsonNamingPolicy.CamelCase.ConvertName(cause.ToString());
    public static string Of(ShootdownStep step) => JsonNamingPolicy.CamelCase.ConvertName(step.ToString());

    /// <summary>For people: "swap-cache hit", "page-out", "shot down".</summary>
    public static string Words(FaultKind kind) => kind switch
    {
        FaultKind.Present => "host page present",
        FaultKind.ZeroFill => "zero-fill",
        FaultKind.SwapCacheHit => "swap-cache hit",
        FaultKind.SwapIn => "swap-in",
        _ => kind.ToString(),
    };

    public static string Words(InvalidateCause cause) => cause switch
    {
        InvalidateCause.PageOut => "page-out",
        _ => cause.ToString().ToLowerInvariant(),
    };

    public static string Words(ShootdownStep step) => step switch
    {
        ShootdownStep.NeverHeld => "never held",
        ShootdownStep.ShotDown => "shot down",
        _ => step.ToString().ToLowerInvariant(),
    };
}
