namespace ToyVmm.Fuzz;

/// <summary>
/// One fuzz target: an entry point that takes any bytes. It returns normally for every
/// input the VMM handles as documented (a refusal with its error type, a guest-caused
/// end of the run) and throws for everything else: an exception of a type no one
/// documents, or a <see cref="FuzzFinding"/> when an oracle of the target fails. AFL++
/// (through SharpFuzz) counts a throw as a crash; the corpus replay test as a failure.
/// </summary>
/// <param name="Name">The target's name: its corpus folder (tests/fuzz/corpus/NAME) and the argument of toyvmm-fuzz.</param>
/// <param name="What">One line: what the bytes are and what is checked.</param>
/// <param name="Run">The entry point.</param>
public sealed record FuzzTarget(string Name, string What, Action<byte[]> Run)
{
    public override string ToString() => Name;
}

/// <summary>An oracle of a fuzz target failed: the VMM misbehaved without throwing.</summary>
public sealed class FuzzFinding(string message) : Exception(message);

/// <summary>Every fuzz target, in one place: <c>make fuzz</c> and the corpus replay both take this list.</summary>
public static class FuzzTargets
{
    public static readonly IReadOnlyList<FuzzTarget> All =
    [
        ElfLoaderTarget.Target,
        InterpreterTarget.Target,
        HypercallTarget.Target,
        CommandLineTarget.Target,
    ];

    public static FuzzTarget? Find(string name) => All.FirstOrDefault(t => t.Name == name);
}
