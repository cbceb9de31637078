namespace ToyVmm.Mmu.Host;

/// <summary>
/// A test hook on the swap device: return an exception to make the next I/O
/// fail as a full disk or an I/O error would, or null to let it through.
/// </summary>
public interface ISwapFaultInjector
{
    Exception? BeforeWrite(uint firstSlot, int slots);
    Exception? BeforeRead(uint slot);
}
