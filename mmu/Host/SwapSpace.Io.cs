using System.Buffers;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ToyVmm.Mmu.Host;

// I/O runs with no swap, LRU or address-space lock held; the frames written
// or read are page-locked by the caller, which keeps their contents stable
// and the slot's checksum single-writer.

public sealed unsafe partial class SwapSpace
{
    private FileStream? _stream;          // owns the handle; disposed in Dispose
    private SafeFileHandle? _handle;
    private FrameBlockMemory?[]? _blockMemory;   // one Memory<byte> view per GiB of frames, made on first use
    private string? _deleteAtEnd;         // a named swap file this host created, deleted in Dispose
    private readonly Lock _lengthLock = new();
    private long _fileLength;             // the file's length: only grows; written under _lengthLock

    /// <summary>
    /// How far the swap file's length runs ahead of the highest slot written (64 MiB): a
    /// write inside the file's length costs the kernel a fraction of one that extends it
    /// (each extending write also updates the inode's size), and the length past the data
    /// is a hole, so the file still takes disk space only where slots were written.
    /// </summary>
    internal const long LengthStep = 64L << 20;

    /// <summary>
    /// The swap file's path, for messages only: a temporary swap file is unlinked
    /// as soon as it is open, so the name no longer leads to it.
    /// </summary>
    public string FilePath { get; private set; } = "";
    public bool IsTemporary { get; private set; }

    /// <summary>The folder of the swap file (for messages); empty when swap is off.</summary>
    public string Folder => FilePath.Length == 0 ? "" : Path.GetDirectoryName(Path.GetFullPath(FilePath)) ?? "";

    /// <summary>
    /// Creates the swap file: never an existing file (create-new, so a typo cannot
    /// truncate the guest or any other file), mode 0600 (it holds guest memory),
    /// locked against a second user (an exclusive flock). A temporary file is
    /// unlinked right after it is opened, so nothing is left behind even by SIGKILL;
    /// a named file is deleted when the host is disposed or the process exits.
    /// </summary>
    private void OpenFile(string? path)
    {
        if (SlotCount == 0) return;
        IsTemporary = path is null;
        FilePath = path ?? Path.Combine(Path.GetTempPath(), $"toyvmm-swap-{Environment.ProcessId}-{Guid.NewGuid():N}.swap");
        var options = new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.ReadWrite,
            Share = FileShare.None,   // on Unix: flock(LOCK_EX | LOCK_NB), so a second opener fails
            // Windows cannot unlink an open file: let the OS delete it at close.
            Options = IsTemporary && OperatingSystem.IsWindows() ? FileOptions.DeleteOnClose : FileOptions.None,
            BufferSize = 0,
        };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        try
        {
            _stream = new FileStream(FilePath, options);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SwapFileException($"cannot create the swap file {FilePath}: {CreateFailureReason(FilePath, e)}", e);
        }
        _handle = _stream.SafeFileHandle;
        if (IsTemporary)
        {
            if (!OperatingSystem.IsWindows()) File.Delete(FilePath);
            return;
        }
        _deleteAtEnd = FilePath;
        // Deleted at exit even when the host is never disposed (finalizers do not run at exit).
        _onExit = (_, _) => Dispose();
        AppDomain.CurrentDomain.ProcessExit += _onExit;
    }

    /// <summary>Why a create-new open failed, in words a user acts on.</summary>
    private static string CreateFailureReason(string path, Exception e)
    {
        if (Directory.Exists(path)) return "it is a directory";
        if (File.Exists(path)) return "the file already exists (a swap file is always created new; remove it or name another)";
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null && !Directory.Exists(dir)) return "the folder does not exist";
        if (e is UnauthorizedAccessException) return "permission denied";
        return e.Message;
    }

    private EventHandler? _onExit;

    /// <summary>
    /// Bytes the swap file can still grow by: the space free to this user on the
    /// filesystem that holds it (the file is sparse, written only where slots are
    /// used, so it takes that space only as pages are swapped out). Null when swap is
    /// off or the filesystem does not say.
    /// </summary>
    public long? FileSystemAvailableBytes()
    {
        if (_handle is null) return null;
        string dir = Folder;
        if (dir.Length == 0) return null;
        try { return new DriveInfo(dir).AvailableFreeSpace; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException) { return null; }
    }

    /// <summary>
    /// A frame's 4 KiB for vectored I/O: a slice of the view of its GiB of the pool
    /// (one small object per GiB instead of one per frame).
    /// </summary>
    private ReadOnlyMemory<byte> FrameBytes(uint f)
    {
        var blocks = Volatile.Read(ref _blockMemory);
        if (blocks is null)
        {
            blocks = new FrameBlockMemory?[(_frames.Count + FrameBlockMemory.Frames - 1) / FrameBlockMemory.Frames];
            blocks = Interlocked.CompareExchange(ref _blockMemory, blocks, null) ?? blocks;
        }
        int b = (int)(f / FrameBlockMemory.Frames);
        var m = Volatile.Read(ref blocks[b]);
        if (m is null)
        {
            m = new FrameBlockMemory(_frames, (uint)b * FrameBlockMemory.Frames, (int)Math.Min(FrameBlockMemory.Frames, _frames.Count - b * FrameBlockMemory.Frames));
            m = Interlocked.CompareExchange(ref blocks[b], m, null) ?? m;
        }
        return m.Memory.Slice((int)(f % FrameBlockMemory.Frames) << Page.Shift, (int)Page.Size);
    }

    /// <summary>
    /// Write locked frames to consecutive slots starting at <paramref name="firstSlot"/>
    /// with one vectored write, then record their checksums. Throws
    /// <see cref="SwapIoException"/> when the device fails; the slots then hold no good copy.
    /// </summary>
    /// <param name="scratch">Room for the frames' buffers where the write goes through
    /// <see cref="RandomAccess"/> (not Linux); on Linux the frames go straight into a
    /// <c>pwritev</c> from the stack.</param>
    internal void WriteRun(uint firstSlot, ReadOnlySpan<uint> frames, List<ReadOnlyMemory<byte>> scratch)
    {
        if (_handle is null) throw new SwapIoException("swap is disabled");
        SetWrittenRun(firstSlot, frames.Length, written: false);
        var injected = FaultInjector?.BeforeWrite(firstSlot, frames.Length);
        if (injected is not null) throw new SwapIoException($"swap write failed: {injected.Message} (slots {firstSlot}..{firstSlot + frames.Length - 1})", injected);
        try
        {
            GrowTo(((long)firstSlot + frames.Length) << Page.Shift);
            if (OperatingSystem.IsLinux()) WriteGathered(_handle, frames, (long)firstSlot << Page.Shift, FaultInjector?.MaxBytesPerWriteCall ?? 0);
            else
            {
                scratch.Clear();
                for (int i = 0; i < frames.Length; i++) scratch.Add(FrameBytes(frames[i]));
                RandomAccess.Write(_handle, scratch, (long)firstSlot << Page.Shift);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SwapIoException($"swap write failed: {e.Message} (slots {firstSlot}..{firstSlot + frames.Length - 1})", e);
        }
        var checksums = ChunkOf(firstSlot).Checksum;
        for (int i = 0; i < frames.Length; i++)
        {
            uint slot = firstSlot + (uint)i;
            if ((slot & SlotChunk.Mask) == 0) checksums = ChunkOf(slot).Checksum;
            checksums[slot & SlotChunk.Mask] = SwapChecksum.Compute(_frames.PageSpan(new Hfn(frames[i])), slot);
        }
        SetWrittenRun(firstSlot, frames.Length, written: true);
    }

    /// <summary>Most buffers one <c>pwritev</c> is given (Linux's IOV_MAX is 1024).</summary>
    private const int MaxIoVectors = 64;

    private struct IoVector
    {
        public byte* Base;
        public nuint Length;
    }

    [LibraryImport("libc", EntryPoint = "pwritev", SetLastError = true)]
    private static partial nint PWriteV(SafeFileHandle fd, IoVector* vectors, int count, long offset);

    /// <summary>
    /// The frames' pages written at <paramref name="offset"/> with <c>pwritev</c> straight from
    /// the pool: the vector is built on the stack from the frames' addresses (no buffer objects to
    /// make, pin and release per page, as <see cref="RandomAccess"/> needs), a short write goes on
    /// from where it stopped, and a failure is the errno's <see cref="IOException"/> (its HResult
    /// the errno, so that <see cref="SwapIoException.OutOfSpace"/> sees ENOSPC).
    /// </summary>
    /// <param name="maxPerCall">More than 0: each call takes at most that many bytes (a short write, for tests).</param>
    private void WriteGathered(SafeFileHandle handle, ReadOnlySpan<uint> frames, long offset, int maxPerCall)
    {
        IoVector* vectors = stackalloc IoVector[MaxIoVectors];
        int done = 0;
        while (done < frames.Length)
        {
            int count = Math.Min(MaxIoVectors, frames.Length - done);
            for (int i = 0; i < count; i++)
                vectors[i] = new IoVector { Base = _frames.PagePointer(new Hfn(frames[done + i])), Length = (nuint)Page.Size };
            // SAFETY: the frames are page-locked by the caller and live in the pool's native block, which never moves.
            int first = 0;
            while (first < count)
            {
                nint n = maxPerCall > 0 ? PWriteVShort(handle, vectors + first, count - first, offset, maxPerCall)
                    : PWriteV(handle, vectors + first, count - first, offset);
                if (n < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Eintr) continue;
                    throw new IOException(Marshal.GetPInvokeErrorMessage(errno), errno);
                }
                if (n == 0) throw new IOException("the swap file took no bytes of a write");
                offset += n;
                // Skip the buffers written whole; a buffer written in part goes on from where it stopped.
                while (first < count && n > 0 && n >= (nint)vectors[first].Length) n -= (nint)vectors[first++].Length;
                if (n > 0 && first < count)   // never more than it was given
                {
                    vectors[first].Base += n;
                    vectors[first].Length -= (nuint)n;
                }
            }
            done += count;
        }
    }

    /// <summary>
    /// A <c>pwritev</c> that takes at most <paramref name="max"/> bytes, as the kernel may (a
    /// signal, a quota, a device that takes less): the vectors past the limit are left out and
    /// the one it falls in is cut for the call. The fault injector's short writes.
    /// </summary>
    private static nint PWriteVShort(SafeFileHandle handle, IoVector* vectors, int count, long offset, int max)
    {
        int whole = 0;
        long bytes = 0;
        while (whole < count && bytes + (long)vectors[whole].Length <= max) bytes += (long)vectors[whole++].Length;
        if (whole == count || bytes == max) return PWriteV(handle, vectors, whole, offset);
        nuint length = vectors[whole].Length;
        vectors[whole].Length = (nuint)(max - bytes);
        try { return PWriteV(handle, vectors, whole + 1, offset); }
        finally { vectors[whole].Length = length; }
    }

    private const int Eintr = 4;

    /// <summary>
    /// Make the file at least <paramref name="end"/> bytes long before a write that ends
    /// there, by whole <see cref="LengthStep"/>s (a hole) up to the swap size. Never shrinks
    /// it: another writer may already be writing past <paramref name="end"/>.
    /// </summary>
    private void GrowTo(long end)
    {
        if (end <= Volatile.Read(ref _fileLength)) return;
        lock (_lengthLock)
        {
            if (end <= _fileLength) return;
            long length = Math.Min((long)SlotCount << Page.Shift, (end + LengthStep - 1) / LengthStep * LengthStep);
            RandomAccess.SetLength(_handle!, length);
            Volatile.Write(ref _fileLength, length);
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
                if (n <= 0) throw new IOException($"the swap file ends early: {got} of {page.Length} bytes (was it truncated behind the VMM's back?)");
                got += n;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = $"swap read failed: {e.Message} (slot {slot})";
            return HostFaultStatus.SwapReadError;
        }
        ulong sum = SwapChecksum.Compute(page, slot);
        if (sum != ChecksumOf(slot))
        {
            error = $"swap checksum mismatch on slot {slot} (the swap file was changed behind the VMM's back?)";
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
        _stream?.Dispose();
        _stream = null;
        _handle = null;
        if (_deleteAtEnd is { } created)
        {
            _deleteAtEnd = null;
            try { File.Delete(created); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* best effort: the run's result matters more */ }
        }
    }

    /// <summary>
    /// Up to a GiB of consecutive frames as <see cref="Memory{T}"/> for vectored I/O;
    /// the pool never moves, so pinning is free.
    /// </summary>
    private sealed unsafe class FrameBlockMemory(FramePool pool, uint first, int count) : MemoryManager<byte>
    {
        public const int Frames = 1 << 18;
        // SAFETY: frames live in native memory that is never moved; the caller holds the page locks of the frames it slices.
        public override Span<byte> GetSpan() => new(pool.PagePointer(new Hfn(first)), count << Page.Shift);
        public override MemoryHandle Pin(int elementIndex = 0) => new(pool.PagePointer(new Hfn(first)) + elementIndex);
        public override void Unpin() { }
        protected override void Dispose(bool disposing) { }
    }
}
