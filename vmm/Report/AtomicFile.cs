namespace ToyVmm.Report;

/// <summary>Writes a file so that it appears whole or not at all: temp file beside it, flush, rename.</summary>
public static class AtomicFile
{
    /// <exception cref="IOException">The file cannot be written; the message names <paramref name="path"/> and why, in one line.</exception>
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string temp = TempBeside(full);
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw new IOException(Why(path, full, ex), ex);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>
    /// Null when <paramref name="path"/> can be written (its folder exists and takes a new
    /// file; nothing is left behind), else the one-line reason, for checking an output
    /// option before the run starts.
    /// </summary>
    public static string? CheckWritable(string path)
    {
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException)
        {
            return $"cannot write {path}: {ex.Message}";
        }
        if (Directory.Exists(full)) return $"cannot write {path}: it is a folder";
        string temp = TempBeside(full);
        try
        {
            using (new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return Why(path, full, ex);
        }
    }

    // Same folder as the target, so the rename stays on one file system and is atomic.
    private static string TempBeside(string full) =>
        Path.Combine(Path.GetDirectoryName(full) ?? ".", $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");

    private static string Why(string path, string full, Exception ex) => ex switch
    {
        DirectoryNotFoundException => $"cannot write {path}: the folder {Path.GetDirectoryName(full)} does not exist",
        UnauthorizedAccessException => $"cannot write {path}: permission denied",
        _ => $"cannot write {path}: {ex.Message}",
    };

    private static void TryDelete(string temp)
    {
        try { File.Delete(temp); } catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
    }
}
