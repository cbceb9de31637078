using System.Runtime.CompilerServices;

namespace ToyVmm.Mmu.Metrics;

/// <summary>
/// One recording thread's share of a <see cref="MeasurementHub"/>: its cells per
/// phase and its trace ring. Only its thread writes it, so recording takes no
/// lock; the hub reads every recorder when it builds a snapshot.
/// </summary>
internal sealed class ThreadRecorder
{
    private PhaseCells?[] _phases = new PhaseCells?[4];   // grown by the owner thread, read by snapshots

    public ThreadRecorder(MeasurementHub hub, Thread owner, int track, TraceRing? ring)
    {
        Hub = hub;
        Owner = owner;
        Track = track;
        Ring = ring;
    }

    public MeasurementHub Hub { get; }
    /// <summary>The one thread that writes this recorder (a thread id may be reused; the object is not).</summary>
    public Thread Owner { get; }

    /// <summary>The trace track of what this thread records on its own behalf.</summary>
    public int Track { get; set; }

    /// <summary>Null when tracing is off.</summary>
    public TraceRing? Ring { get; }

    /// <summary>The cells of phase <paramref name="phase"/>; the first record of a thread in a phase allocates them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public PhaseCells Cells(int phase)
    {
        var phases = _phases;
        if ((uint)phase < (uint)phases.Length && phases[phase] is { } cells) return cells;
        return CellsSlow(phase);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private PhaseCells CellsSlow(int phase)
    {
        var phases = _phases;
        if (phase >= phases.Length)
        {
            var grown = new PhaseCells?[Math.Max(phase + 1, phases.Length * 2)];
            Array.Copy(phases, grown, phases.Length);
            phases = grown;
        }
        var cells = new PhaseCells();
        phases[phase] = cells;
        Volatile.Write(ref _phases, phases);   // the cells before the array that shows them
        return cells;
    }

    /// <summary>The cells of a phase if this thread recorded in it (snapshots).</summary>
    public PhaseCells? CellsIfAny(int phase)
    {
        var phases = Volatile.Read(ref _phases);
        return (uint)phase < (uint)phases.Length ? Volatile.Read(ref phases[phase]) : null;
    }
}
