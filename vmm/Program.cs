namespace ToyVmm;

internal static class Program
{
    private static Task<int> Main(string[] args) => Cli.ToyVmmApp.RunAsync(args);
}
