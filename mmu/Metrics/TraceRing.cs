namespace ToyVmm.Mmu.Metrics;

/// <summary>
/// One thread's trace events: a ring of chunks claimed from the hub's budget
/// (<see cref="MeasurementHub.TraceLimit"/> events over all threads together).
/// While the budget lasts the ring grows a chunk at a time; once it is spent a
/// full ring overwrites its OLDEST events (the end of a run, where a violation
/// stops the VM, is what a reader wants), counting each one dropped. A thread
/// that got no chunk at all drops what it records.
/// </summary>
/// <remarks>
/// Written by its thread only; <see cref="CopyTo"/> is exact once the thread has
/// stopped recording, and may see a torn event while it runs.
/// </remarks>
internal sealed class TraceRing(MeasurementHub hub)
{
    private TraceEvent[][] _chunks = [];   // replaced (grown) by the owner thread, read by snapshots
    private int _chunk;                    // chunk of the next write
    private int _index;                    // index of the next write in it
    private bool _wrapped;
    private long _dropped;

    public long Dropped => Volatile.Read(ref _dropped);

    public void Add(in TraceEvent e)
    {
        var chunks = _chunks;
        if (_chunk < chunks.Length)
        {
            var c = chunks[_chunk];
            if (_wrapped) Volatile.Write(ref _dropped, _dropped + 1);
            c[_index] = e;
            if (++_index == c.Length) Advance();
            return;
        }
        // No chunk: the budget was spent before this thread recorded anything.
        Volatile.Write(ref _dropped, _dropped + 1);
    }

    /// <summary>Called once, before the first <see cref="Add"/>: claim a first chunk if the budget allows.</summary>
    public void Start()
    {
        int n = hub.ClaimTraceEvents(hub.TraceChunkEvents);
        if (n > 0) Volatile.Write(ref _chunks, [new TraceEvent[n]]);
    }

    private void Advance()
    {
        _index = 0;
        if (_wrapped || _chunk + 1 < _chunks.Length) { _chunk = (_chunk + 1) % _chunks.Length; return; }
        int n = hub.ClaimTraceEvents(hub.TraceChunkEvents);
        if (n > 0)
        {
            // Growing allocates; it stops for good once the budget is spent (the steady state).
            var grown = new TraceEvent[_chunks.Length + 1][];
            Array.Copy(_chunks, grown, _chunks.Length);
            grown[^1] = new TraceEvent[n];
            Volatile.Write(ref _chunks, grown);
            _chunk++;
            return;
        }
        _wrapped = true;
        _chunk = 0;
    }

    /// <summary>Append the ring's events, oldest first.</summary>
    public void CopyTo(List<TraceEvent> into)
    {
        var chunks = Volatile.Read(ref _chunks);
        int chunk = Math.Min(_chunk, chunks.Length), index = _index;
        if (_wrapped)
        {
            for (int c = chunk; c < chunks.Length; c++)
                for (int i = c == chunk ? index : 0; i < chunks[c].Length; i++) into.Add(chunks[c][i]);
            for (int c = 0; c <= chunk && c < chunks.Length; c++)
                for (int i = 0; i < (c == chunk ? index : chunks[c].Length); i++) into.Add(chunks[c][i]);
            return;
        }
        for (int c = 0; c <= chunk && c < chunks.Length; c++)
            for (int i = 0; i < (c == chunk ? index : chunks[c].Length); i++) into.Add(chunks[c][i]);
    }
}
