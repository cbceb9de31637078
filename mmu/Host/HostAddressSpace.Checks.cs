namespace ToyVmm.Mmu.Host;

public sealed partial class HostAddressSpace
{
    /// <summary>Part of <see cref="HostMemory.CheckConsistency"/>: every PTE against the frame and swap state it names.</summary>
    internal void CheckPageTable(List<string> errors, Dictionary<uint, ulong> mappedBy, HashSet<uint> slots)
    {
        EnterLock();
        try
        {
            long resident = 0;
            foreach (var v in _vmas)
            {
                for (ulong vpn = v.StartVpn; _pt.NextUsed(ref vpn, v.EndVpn); vpn++)
                {
                    var pte = _pt.Get(vpn);
                    if (pte.IsPresent)
                    {
                        resident++;
                        if (pte.Frame >= (uint)_frames.Count) { errors.Add($"space {Id} page 0x{vpn:x}: {pte} names no frame"); continue; }
                        if (!mappedBy.TryAdd(pte.Frame, FrameMeta.MakeOwner(Id, vpn)))
                            errors.Add($"frame {pte.Frame} is mapped twice (space {Id} page 0x{vpn:x})");
                        if (pte.Writable != ((v.Protection & HostProtection.Write) != 0))
                            errors.Add($"space {Id} page 0x{vpn:x}: {pte} disagrees with {v}");
                    }
                    else if (pte.IsSwap)
                    {
                        uint slot = pte.SwapSlot;
                        slots.Add(slot);
                        if (slot >= _host.Swap.SlotCount || !_host.Swap.IsSlotInUse(slot) || _host.Swap.PteRefs(slot) != 1)
                            errors.Add($"space {Id} page 0x{vpn:x}: swap slot {slot} is not in use once");
                    }
                    else errors.Add($"space {Id} page 0x{vpn:x}: malformed {pte}");
                }
            }
            if (resident != _resident) errors.Add($"space {Id} counts {_resident} resident pages, its page table maps {resident}");
        }
        finally { ExitLock(); }
    }
}
