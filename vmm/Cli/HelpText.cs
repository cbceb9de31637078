namespace ToyVmm.Cli;

/// <summary>What help prints after the option list: examples, the config file, the exit statuses.</summary>
public static class HelpText
{
    public const string Epilogue = """
        Examples:
          A guest under host pressure: guest RAM four times the host's, forced page-outs every 5 ms,
          the invariant checker on, and the end-of-run table:
            toyvmm run guest/build/memhot.elf --memory 64M --host-memory 16M --vcpus 2 --pageout every=5ms --check --stats
          Several schedules at once: the 64 coldest pages every 2 ms, half the resident guest at 1 s,
          and the host losing 8M of frames at 2 s:
            toyvmm run guest/build/memhot.elf --host-memory 32M --pageout every=2ms,pages=64,pick=cold --pageout at=1s,fraction=0.5 --pageout shrink=8M@2s
          A JSON report, a trace and PNG plots of one run, with a fixed seed:
            toyvmm run guest/build/memhot.elf --host-memory 16M --pageout every=5ms --report out/run.json --trace out/trace.json --plot out/plots --seed 7
          An experiment kept in a file (the options above in camelCase, the guest too):
            toyvmm run --config experiments/pressure.json

        Settings also come from ./toyvmm.json (or --config FILE) and from TOYVMM_ environment variables
        (TOYVMM_MEMORY=128M, TOYVMM_HOST_MEMORY=16M, TOYVMM_PAGEOUT__0=every=5ms); the command line wins
        over the environment, the environment over the file. Durations need a unit: 5ms, 2s, 1.5s, 250us.
        Exit status: the guest's, or 1 internal error, 2 usage, 3 bad guest file, 4 VM error,
        5 host out of memory, 6 instruction limit, 7 invariant violation, 130 interrupted (README.md).

        """;
}
