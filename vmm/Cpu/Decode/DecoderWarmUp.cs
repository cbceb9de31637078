using System.Runtime.CompilerServices;
using Iced.Intel;

namespace ToyVmm.Cpu;

/// <summary>
/// The decoder's one-time start-up work, done off the vCPU thread: the binder's registration
/// (Ops/*.cs <c>Register()</c>: several hundred small methods and closures JIT-compiled once)
/// and Iced's decoder tables. Without this the first block decode of a process does it on the
/// vCPU thread, inside the guest's run (about 1,100 methods compiled at tier 0). Started once
/// per process when the first vCPU is created; the vCPU's first decode waits on the class
/// initialisation lock if it comes first, so nothing is done twice and nothing changes but when.
/// </summary>
internal static class DecoderWarmUp
{
    private static int _started;

    /// <summary>Starts the warm-up on a thread-pool thread, once per process.</summary>
    public static void Start()
    {
        if (Interlocked.Exchange(ref _started, 1) != 0) return;
        ThreadPool.UnsafeQueueUserWorkItem(static _ => Run(), null);
    }

    /// <summary>Does the work on the calling thread (tests; <see cref="Start"/> runs it in the background).</summary>
    internal static int Run()
    {
        try
        {
            RuntimeHelpers.RunClassConstructor(typeof(Binder).TypeHandle);
            // A few common forms through the decoder, as BlockDecoder decodes them, so that Iced's
            // tables and its hot decode paths are initialised: mov r,m; add r,imm; cmp/jcc; call; ret.
            byte[] code = [0x48, 0x8B, 0x47, 0x08, 0x48, 0x83, 0xC0, 0x01, 0x39, 0xC8, 0x75, 0xF4, 0xE8, 0, 0, 0, 0, 0xC3];
            var decoder = Decoder.Create(64, new ByteArrayCodeReader(code), 0x1000, DecoderOptions.ForceReservedNop);
            int known = 0;
            while (decoder.IP < 0x1000 + (ulong)code.Length)
            {
                decoder.Decode(out Instruction ins);
                if (Binder.IsKnown(ins.Mnemonic)) known++;
            }
            return known;
        }
        catch (Exception)
        {
            // Only a head start: the vCPU's own first decode repeats whatever failed and reports it.
            return -1;
        }
    }
}
