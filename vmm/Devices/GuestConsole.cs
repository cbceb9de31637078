namespace ToyVmm.Devices;

/// <summary>
/// The debug console on port 0xE9: bytes the guest writes, buffered and passed to
/// the host's standard output at each newline, when the buffer fills and at exit.
/// </summary>
/// <remarks>Lock: <c>_lock</c> guards the buffer and the stream; every vCPU thread writes here.</remarks>
public sealed class GuestConsole
{
    private const int BufferBytes = 4096;
    private readonly Lock _lock = new();
    private readonly Stream _output;           // guarded by _lock
    private readonly byte[] _buffer = new byte[BufferBytes]; // guarded by _lock
    private int _used;                         // guarded by _lock
    private long _bytesWritten;                // guarded by _lock

    public GuestConsole(Stream output) => _output = output;

    /// <summary>Bytes the guest has written so far.</summary>
    public long BytesWritten
    {
        get { lock (_lock) return _bytesWritten; }
    }

    public void Write(byte b)
    {
        lock (_lock)
        {
            _buffer[_used++] = b;
            _bytesWritten++;
            if (b == (byte)'\n' || _used == BufferBytes)
                FlushLocked();
        }
    }

    /// <summary>Passes everything buffered to the output. Call at exit.</summary>
    public void Flush()
    {
        lock (_lock) FlushLocked();
    }

    private void FlushLocked()
    {
        System.Diagnostics.Debug.Assert(_lock.IsHeldByCurrentThread, "the console lock is held");
        if (_used == 0) return;
        try
        {
            _output.Write(_buffer, 0, _used);
            _output.Flush();
        }
        catch (IOException)
        {
            // A closed standard output (e.g. `toyvmm run g.elf | head -1`) must not crash
            // the VMM: the guest's bytes are dropped as a terminal would drop them.
        }
        _used = 0;
    }
}
