using SharpFuzz;
using ToyVmm.Fuzz;

// toyvmm-fuzz TARGET          under afl-fuzz: SharpFuzz's fork-server loop, one input per
//                             round on standard input; a throw is a crash (make fuzz)
// toyvmm-fuzz TARGET FILE...  run each file once and say which ones fail (triage of crashes)
// toyvmm-fuzz --list          the targets
if (args.Length == 0 || args[0] == "--list")
{
    foreach (var t in FuzzTargets.All) Console.WriteLine($"{t.Name,-12} {t.What}");
    return args.Length == 0 ? 2 : 0;
}
var target = FuzzTargets.Find(args[0]);
if (target is null)
{
    Console.Error.WriteLine($"toyvmm-fuzz: unknown target '{args[0]}' (targets: {string.Join(", ", FuzzTargets.All.Select(t => t.Name))})");
    return 2;
}
if (args.Length == 1)
{
    // Out of process: a stack overflow or a crash of the runtime is reported as a crash
    // too, rather than taking the fork server down with it.
    Fuzzer.OutOfProcess.Run(stream =>
    {
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        target.Run(buffer.ToArray());
    });
    return 0;
}
int failed = 0;
foreach (string file in args.Skip(1))
{
    try
    {
        target.Run(File.ReadAllBytes(file));
        Console.WriteLine($"ok    {file}");
    }
    catch (Exception e)
    {
        failed++;
        Console.WriteLine($"FAIL  {file}: {e.GetType().Name}: {e.Message}");
        Console.WriteLine(e.StackTrace);
    }
}
return failed == 0 ? 0 : 1;
