namespace ToyVmm.Devices;

/// <summary>
/// One VM's console when several VMs share standard output (GUEST-ABI 1.1
/// "Several VMs on one host"): every line goes out whole, prefixed with
/// <c>vm&lt;N&gt;: </c>, so lines of different VMs never mix; an unfinished last
/// line is finished with <c>\n</c> by <see cref="EndOfOutput"/> when the VM ends.
/// </summary>
/// <remarks>
/// Locks: <c>_pending</c> is this VM's (its <see cref="GuestConsole"/> already
/// writes under its own lock, one writer at a time); the shared output's lock,
/// <paramref name="outputLock"/>, is held only while a whole line is written, so
/// two VMs' lines interleave line by line. A write error of the output surfaces
/// to the writing VM's console, which stops that VM (<see cref="GuestConsole.Failed"/>).
/// </remarks>
public sealed class LinePrefixingStream(Stream output, Lock outputLock, int vm) : Stream
{
    private readonly byte[] _prefix = System.Text.Encoding.ASCII.GetBytes($"vm{vm}: ");
    private readonly MemoryStream _pending = new();   // the unfinished line, without its prefix

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            int nl = bytes.IndexOf((byte)'\n');
            if (nl < 0)
            {
                _pending.Write(bytes);
                return;
            }
            _pending.Write(bytes[..(nl + 1)]);
            WriteLine();
            bytes = bytes[(nl + 1)..];
        }
    }

    /// <summary>The VM ended: an unfinished last line goes out with a <c>\n</c>.</summary>
    public void EndOfOutput()
    {
        if (_pending.Length == 0) return;
        _pending.WriteByte((byte)'\n');
        WriteLine();
    }

    private void WriteLine()
    {
        var line = _pending.GetBuffer().AsSpan(0, (int)_pending.Length);
        try
        {
            lock (outputLock)
            {
                output.Write(_prefix);
                output.Write(line);
                output.Flush();
            }
        }
        finally { _pending.SetLength(0); }
    }

    public override void Flush() { }   // whole lines are written at once; the rest waits for its newline
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
