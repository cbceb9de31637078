namespace ToyVmm.Cpu;

/// <summary>
/// Code-cache counters (CodeCache.Reclaim.cs): live blocks and the bytes of their slots,
/// retired blocks waiting for a grace period, the arena (chunks held, and the most ever
/// held) against its cap, and events since the VM started.
/// </summary>
internal readonly record struct CodeCacheStats(
    long LiveBlocks, long LiveBytes, long RetiredBlocks, long RetiredBytes,
    long ArenaBytes, long PeakArenaBytes, long CapBytes,
    long BlocksDecoded, long BlocksInvalidated, long BlocksFreed, long Flushes, long GracePeriods);
