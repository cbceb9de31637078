namespace ToyVmm.Mmu.Host;

public sealed partial class HostMemory
{
    /// <summary>
    /// Check, while nothing runs, that the page tables, the reverse map, the
    /// swap cache, the LRU and the free list agree. Returns the violations
    /// found (empty when consistent), each as a sentence.
    /// </summary>
    public IReadOnlyList<string> CheckConsistency()
    {
        var errors = new List<string>();
        var mappedBy = new Dictionary<uint, ulong>();
        var slots = new HashSet<uint>();
        foreach (var mm in Spaces()) mm.CheckPageTable(errors, mappedBy, slots);
        int free = 0, retired = 0;
        for (uint f = 0; f < (uint)Frames.Count; f++)
        {
            ref FrameMeta m = ref Frames.Meta(f);
            var flags = (FrameFlags)m.Flags;
            if ((flags & FrameFlags.Retired) != 0)
            {
                retired++;
                if (m.RefCount != 0 || m.MapCount != 0 || m.Owner != 0 || flags != FrameFlags.Retired)
                    errors.Add($"retired frame {f} has refs {m.RefCount}, maps {m.MapCount}, owner 0x{m.Owner:x}, flags {flags}");
                continue;
            }
            if ((flags & FrameFlags.Free) != 0)
            {
                free++;
                if (m.RefCount != 0 || m.MapCount != 0 || (flags & ~FrameFlags.Free) != 0)
                    errors.Add($"free frame {f} has refs {m.RefCount}, maps {m.MapCount}, flags {flags}");
                continue;
            }
            bool cached = (flags & FrameFlags.SwapCache) != 0;
            if (m.MapCount == 1)
            {
                if (!mappedBy.TryGetValue(f, out ulong owner) || owner != m.Owner)
                    errors.Add($"frame {f}: rmap owner {FrameMeta.OwnerSpace(m.Owner)}:0x{FrameMeta.OwnerVpn(m.Owner):x} is not the PTE that maps it");
            }
            else if (m.MapCount == 0)
            {
                if (m.Owner != 0) errors.Add($"unmapped frame {f} still has rmap owner 0x{m.Owner:x}");
                if (!cached) errors.Add($"frame {f} is neither free, mapped nor swap-cached (leaked)");
            }
            else errors.Add($"frame {f} has map count {m.MapCount}");
            if (mappedBy.ContainsKey(f) && m.MapCount != 1) errors.Add($"frame {f} is mapped by a PTE but its map count is {m.MapCount}");
            int expectedRefs = m.MapCount + (cached ? 1 : 0);
            if (m.RefCount != expectedRefs) errors.Add($"frame {f} has {m.RefCount} references, expected {expectedRefs} (map {m.MapCount}, cache {cached})");
            if (cached) slots.Add(m.SwapSlot);
            if (cached && Swap.CachedFrame(m.SwapSlot) != f) errors.Add($"frame {f} says it caches slot {m.SwapSlot}, the slot says {Swap.CachedFrame(m.SwapSlot)}");
            if ((flags & FrameFlags.OnLru) == 0) errors.Add($"in-use frame {f} is not on the LRU (flags {flags})");
            if ((flags & (FrameFlags.Locked | FrameFlags.Isolated)) != 0) errors.Add($"frame {f} is still locked or isolated at rest (flags {flags})");
        }
        if (slots.Count != Swap.SlotsInUse) errors.Add($"{Swap.SlotsInUse} swap slots are in use but PTEs and the swap cache name {slots.Count} (leaked slots)");
        if (free != FreeFrames) errors.Add($"{free} frames are marked free but the allocator counts {FreeFrames}");
        if (retired != RetiredFrames) errors.Add($"{retired} frames are marked retired but the allocator counts {RetiredFrames}");
        foreach (var (f, _) in mappedBy)
            if ((Frames.FlagsOf(f) & (FrameFlags.Free | FrameFlags.Retired)) != 0) errors.Add($"a PTE maps free or retired frame {f}");
        int listed = Lru.ActiveCount + Lru.InactiveCount;
        if (listed != Frames.Count - free - retired) errors.Add($"LRU lists hold {listed} frames, {Frames.Count - free - retired} are in use");
        return errors;
    }
}
