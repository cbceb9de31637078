namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// Where everything lives in the 2 MiB block that both sides run in. The host
/// runs the snippet in a native block at some 2 MiB-aligned address; the guest
/// maps the same guest-virtual addresses onto guest-physical
/// <see cref="GuestPhysicalBase"/>. Code, data and stack therefore have the same
/// addresses on both sides, and registers that hold pointers compare exactly.
/// (The guest maps only the used 32 KiB, with 4 KiB pages in reverse physical order.)
/// </summary>
/// <remarks>
/// <code>
///   +0x0000  code page: thunk prologue, snippet, epilogue (the guest sees hlt there)
///   +0x2000  scratch data, randomised identically on both sides, compared after
///   +0x4000  gap: room for a signal frame pushed natively below the snippet's stack
///   +0x7700  stack window compared after (RSP starts at +0x7800)
///   +0x8000  end of what is used
/// </code>
/// The kernel places a signal frame 128 bytes below RSP; snippets push at most a
/// few words, so the compared windows are never touched by one.
/// </remarks>
public static class RegionLayout
{
    public const ulong BlockSize = 2UL << 20;
    public const int CodeOffset = 0x0000;
    public const int CodeSize = 0x2000;
    public const int ScratchOffset = 0x2000;
    public const int ScratchSize = 0x2000;
    public const int StackWindowOffset = 0x7700;
    public const int StackWindowSize = 0x900;
    public const int InitialRspOffset = 0x7800;

    /// <summary>Bytes of the block in use (code to the end of the stack window).</summary>
    public const int UsedSize = 0x8000;

    /// <summary>Guest-physical address the used part of the block maps onto (4 KiB pages).</summary>
    public const ulong GuestPhysicalBase = 0x40000;
}
