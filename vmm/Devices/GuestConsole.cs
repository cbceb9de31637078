using System.Runtime.InteropServices;

namespace ToyVmm.Devices;

/// <summary>
/// The debug console on port 0xE9: bytes the guest writes, buffered and passed to
/// the host's standard output at each newline, when the buffer fills and at exit.
/// The first write error is kept (<see cref="Failure"/>) and announced once
/// (<see cref="Failed"/>) so the run can stop; later bytes are dropped.
/// </summary>
/// <remarks>Lock: <c>_lock</c> guards the buffer, the stream and the failure; every vCPU thread writes here.</remarks>
public sealed class GuestConsole
{
    private const int BufferBytes = 4096;
    private const int Epipe = 32;               // Linux and macOS
    private readonly Lock _lock = new();
    private readonly Stream _output;           // guarded by _lock
    private readonly byte[] _buffer = new byte[BufferBytes]; // guarded by _lock
    private int _used;                         // guarded by _lock
    private long _bytesWritten;                // guarded by _lock
    private ConsoleFailure? _failure;          // guarded by _lock; set once

    public GuestConsole(Stream output) => _output = output;

    /// <summary>
    /// Raised once, on the writing thread with the console lock held, when the output
    /// first fails; the handler must not write to the console (stopping the VM is fine).
    /// </summary>
    public event Action<ConsoleFailure>? Failed;

    /// <summary>Bytes the guest has written so far.</summary>
    public long BytesWritten
    {
        get { lock (_lock) return _bytesWritten; }
    }

    /// <summary>The output's first error, or null while it works.</summary>
    public ConsoleFailure? Failure
    {
        get { lock (_lock) return _failure; }
    }

    public void Write(byte b)
    {
        lock (_lock)
        {
            _bytesWritten++;
            if (_failure != null) return;
            _buffer[_used++] = b;
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
        if (_used == 0 || _failure != null) return;
        try
        {
            _output.Write(_buffer, 0, _used);
            _output.Flush();
        }
        catch (IOException e)
        {
            // Never ignored: a full disk must not lose the guest's output silently. The
            // VMM does not crash either; the run stops and says why.
            _failure = new ConsoleFailure(e.HResult == Epipe, ReasonOf(e));
            Failed?.Invoke(_failure);
        }
        _used = 0;
    }

    /// <summary>The errno's own words when the exception carries one (Unix I/O errors do), else the message.</summary>
    private static string ReasonOf(IOException e) =>
        e.HResult is > 0 and < 4096 ? Marshal.GetPInvokeErrorMessage(e.HResult) : e.Message;
}
