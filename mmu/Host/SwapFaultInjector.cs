namespace ToyVmm.Mmu.Host;

/// <summary>
/// A test hook on the swap device: return an exception to make the next I/O
/// fail as a full disk or an I/O error would, or null to let it through.
/// </summary>
public interface ISwapFaultInjector
{
    Exception? BeforeWrite(uint firstSlot, int slots);
    Exception? BeforeRead(uint slot);

    /// <summary>
    /// The most bytes one write call may take, as a kernel's short write would (Linux's vectored
    /// write only): the swap space then goes on from where the call stopped. 0: no limit.
    /// </summary>
    int MaxBytesPerWriteCall => 0;
}
