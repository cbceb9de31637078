using ToyVmm.Fuzz;
using Xunit;

namespace ToyVmm.Tests.Fuzz;

/// <summary>
/// Every input of the fuzz corpus (tests/fuzz/corpus/TARGET: the seeds and the inputs
/// AFL++ kept because they reached new code) and every crash found so far
/// (tests/fuzz/regressions/TARGET) runs through the same entry point <c>make fuzz</c>
/// drives: each must end as documented (a refusal of its documented type, a
/// guest-caused end of the run with a consistent host), never with another exception
/// or a failed oracle.
/// </summary>
public class CorpusReplayTests
{
    private static readonly string[] Folders = ["corpus", "regressions"];

    /// <summary>(target, file relative to tests/fuzz) for every input of every target.</summary>
    public static TheoryData<string, string> Inputs()
    {
        var data = new TheoryData<string, string>();
        string root = Path.Combine(GuestFiles.RepoRoot, "tests", "fuzz");
        foreach (var target in FuzzTargets.All)
            foreach (string folder in Folders)
            {
                string dir = Path.Combine(root, folder, target.Name);
                if (!Directory.Exists(dir)) continue;
                foreach (string file in Directory.EnumerateFiles(dir).Order(StringComparer.Ordinal))
                    data.Add(target.Name, Path.GetRelativePath(root, file));
            }
        return data;
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void Run_CorpusInput_EndsAsDocumented(string target, string file)
    {
        var input = File.ReadAllBytes(Path.Combine(GuestFiles.RepoRoot, "tests", "fuzz", file));
        FuzzTargets.Find(target)!.Run(input);
    }

    [Fact]
    public void Corpus_EveryTarget_HasSeeds()
    {
        foreach (var target in FuzzTargets.All)
        {
            string dir = Path.Combine(GuestFiles.RepoRoot, "tests", "fuzz", "corpus", target.Name);
            Assert.True(Directory.Exists(dir) && Directory.EnumerateFiles(dir).Any(), $"no seed corpus for the fuzz target {target.Name} in {dir}");
        }
    }
}
