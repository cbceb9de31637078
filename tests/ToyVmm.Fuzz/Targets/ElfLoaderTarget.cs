using ToyVmm.Loader;
using ToyVmm.Vm;

namespace ToyVmm.Fuzz;

/// <summary>
/// The ELF loader: the bytes are a guest file. It is refused with an
/// <see cref="ElfLoadException"/> (one line naming the rule), or accepted as an image
/// whose every segment keeps every rule of GUEST-ABI.md "Binary format"; an accepted
/// image is then built into a VM (segments copied, boot tables laid out), which may
/// refuse it only with an <see cref="ArgumentException"/> saying why.
/// </summary>
internal static class ElfLoaderTarget
{
    public static readonly FuzzTarget Target = new("elf", "a guest ELF file: refused with ElfLoadException, or loaded and built into a VM", Run);

    private static void Run(byte[] data)
    {
        ElfImage image;
        try
        {
            image = ElfLoader.Parse(data, GuestImage.Ram);
        }
        catch (ElfLoadException e)
        {
            if (e.Message.Contains('\n')) throw new FuzzFinding($"a refusal of more than one line: {e.Message}");
            return;
        }
        CheckRules(image, data.Length);
        try
        {
            using var vm = VirtualMachine.Create(new VmConfig(GuestImage.Ram, 1), image, Stream.Null);
        }
        catch (ArgumentException) { }   // the layout refused it (a segment in the reserved top), as documented
    }

    private static void CheckRules(ElfImage image, int fileBytes)
    {
        ulong loadEnd = GuestImage.Ram - ElfLoader.ReservedTopBytes;
        if (image.Segments.Count == 0) throw new FuzzFinding("an image with no segment was accepted");
        bool entryInCode = false;
        ulong previousEnd = 0;
        foreach (var s in image.Segments)
        {
            if (s.Start.Value < ElfLoader.LoadAreaStart || s.End.Value > loadEnd || s.End.Value < s.Start.Value)
                throw new FuzzFinding($"segment {s} accepted outside the load area [0x{ElfLoader.LoadAreaStart:x}, 0x{loadEnd:x})");
            if (s.FileSize > s.MemorySize)
                throw new FuzzFinding($"segment {s} accepted with more file bytes than memory bytes");
            if (s.Start.Value < previousEnd)
                throw new FuzzFinding($"segment {s} accepted overlapping the one before it (or out of order)");
            if (image.FileBytes(s).Length != (int)s.FileSize)
                throw new FuzzFinding($"segment {s} accepted with file bytes past the end of the {fileBytes}-byte file");
            previousEnd = s.End.Value;
            entryInCode |= s.Executable && image.Entry >= s.Start.Value && image.Entry < s.End.Value;
        }
        if (!entryInCode) throw new FuzzFinding($"entry 0x{image.Entry:x} accepted outside every executable segment");
    }
}
