using System.Buffers;
using Microsoft.Win32.SafeHandles;

namespace ToyVmm.Mmu.Host;

// I/O runs with no swap, LRU or address-space lock held; the frames written
// or read are page-locked by the caller, which keeps their contents stable
// and the slot's checksum single-writer.

public sealed partial class SwapSpace
{
    private FileStream? _stream;          // owns the handle; disposed (and, for a temporary file, deleted) in Dispose
    private SafeFileHandle? _handle;
    private readonly FrameMemory?[] _frameMemory;   // one Memory<byte> view per frame, made on first use

    /// <summary>The swap file's path.</summary>
    public string FilePath { get; private set; } = "";
    public bool IsTemporary { get; private set; }

    private void OpenFile(string? path)
    {
        if (SlotCount == 0) return;
        IsTemporary = path is null;
        FilePath = path ?? Path.Combine(Path.GetTempPath(), $"toyvmm-swap-{Environment.ProcessId}-{Guid.NewGuid():N}.swap");
        var options = new FileStreamOptions
        {
            Mode = IsTemporary ? FileMode.CreateNew : FileMode.Create,
            Access = FileAccess.ReadWrite,
            Share = FileShare.ReadWrite,
            Options = IsTemporary ? FileOptions.DeleteOnClose : FileOptions.None,
            BufferSize = 0,
        };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        try
        {
            _stream = new FileStream(FilePath, options);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SwapIoException($"cannot create the swap file {FilePath}: {e.Message}", e);
        }
        _handle = _stream.SafeFileHandle;
        if (IsTemporary)
        {
            // Deleted at exit even when the host is never disposed (finalizers do not run at exit).
            _onExit = (_, _) => Dispose();
            AppDomain.CurrentDomain.ProcessExit += _onExit;
        }
    }

    private EventHandler? _onExit;

    private ReadOnlyMemory<byte> FrameBytes(uint f)
    {
        var m = Volatile.Read(ref _frameMemory[f]);
        if (m is null)
        {
            m = new FrameMemory(_frames, f);
            m = Interlocked.CompareExchange(ref _frameMemory[f], m, null) ?? m;
        }
        return m.Memory;
    }

    /// <summary>
    /// Write locked frames to consecutive slots starting at <paramref name="firstSlot"/>
    /// with one vectored write, then record their checksums. Throws
    /// <see cref="SwapIoException"/> when the device fails; the slots then hold no good copy.
    /// </summary>
    internal void WriteRun(uint firstSlot, ReadOnlySpan<uint> frames, List<ReadOnlyMemory<byte>> scratch)
    {
        if (_handle is null) throw new SwapIoException("swap is disabled");
        for (int i = 0; i < frames.Length; i++) ClearWritten(firstSlot + (uint)i);
        var injected = FaultInjector?.BeforeWrite(firstSlot, frames.Length);
        if (injected is not null) throw new SwapIoException($"swap write of slots {firstSlot}..{firstSlot + frames.Length - 1} failed: {injected.Message}", injected);
        scratch.Clear();
        for (int i = 0; i < frames.Length; i++) scratch.Add(FrameBytes(frames[i]));
        try
        {
            RandomAccess.Write(_handle, scratch, (long)firstSlot << Page.Shift);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SwapIoException($"swap write of slots {firstSlot}..{firstSlot + frames.Length - 1} failed: {e.Message}", e);
        }
        for (int i = 0; i < frames.Length; i++)
        {
            uint slot = firstSlot + (uint)i;
            _checksum[slot] = SwapChecksum.Compute(_frames.PageSpan(new Hfn(frames[i])), slot);
            SetWritten(slot);
        }
    }

    /// <summary>Read a slot into a locked frame and verify its checksum.</summary>
    internal HostFaultStatus Read(uint slot, uint f, out string? error)
    {
        error = null;
        if (_handle is null) { error = "swap is disabled"; return HostFaultStatus.SwapReadError; }
        if (!IsWritten(slot)) { error = $"swap slot {slot} holds no good copy"; return HostFaultStatus.SwapReadError; }
        var page = _frames.PageSpan(new Hfn(f));
        try
        {
            var injected = FaultInjector?.BeforeRead(slot);
            if (injected is not null) throw new IOException(injected.Message, injected);
            int got = 0;
            while (got < page.Length)
            {
                int n = RandomAccess.Read(_handle, page[got..], ((long)slot << Page.Shift) + got);
                if (n <= 0) throw new IOException($"short read at slot {slot} ({got} of {page.Length} bytes)");
                got += n;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = $"swap read of slot {slot} failed: {e.Message}";
            return HostFaultStatus.SwapReadError;
        }
        ulong sum = SwapChecksum.Compute(page, slot);
        if (sum != _checksum[slot])
        {
            error = $"swap slot {slot} checksum mismatch (stored 0x{_checksum[slot]:x16}, read 0x{sum:x16})";
            return HostFaultStatus.SwapChecksumMismatch;
        }
        return HostFaultStatus.Ok;
    }

    public void Dispose()
    {
        if (_onExit is not null)
        {
            AppDomain.CurrentDomain.ProcessExit -= _onExit;
            _onExit = null;
        }
        _stream?.Dispose();   // a temporary file goes with it (DeleteOnClose)
        _stream = null;
        _handle = null;
    }

    /// <summary>A frame's 4 KiB as <see cref="Memory{T}"/> for vectored I/O; the pool never moves, so pinning is free.</summary>
    private sealed unsafe class FrameMemory(FramePool pool, uint frame) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => pool.PageSpan(new Hfn(frame));
        // SAFETY: frames live in native memory that is never moved; the caller holds the page lock.
        public override MemoryHandle Pin(int elementIndex = 0) => new(pool.PagePointer(new Hfn(frame)) + elementIndex);
        public override void Unpin() { }
        protected override void Dispose(bool disposing) { }
    }
}
