namespace ToyVmm.Mmu.Secondary;

/// <summary>What a vCPU wants to do with a guest page.</summary>
public enum AccessKind : byte
{
    Read = 0,
    Write = 1,
    Fetch = 2,
}
