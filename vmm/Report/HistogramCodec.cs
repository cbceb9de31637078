using HdrHistogram;
using HdrHistogram.Utilities;

namespace ToyVmm.Report;

/// <summary>
/// HdrHistogram's standard encoded form: the compressed V2 encoding in base64, as
/// one payload of its histogram log format. Any HdrHistogram port decodes it
/// (Java <c>Histogram.decodeFromCompressedByteBuffer</c>, Python <c>HdrHistogram.decode</c>,
/// Go <c>hdrhistogram.Decode</c>... ), so runs can be merged and re-plotted elsewhere.
/// </summary>
public static class HistogramCodec
{
    public static string Encode(HistogramBase histogram)
    {
        var buffer = ByteBuffer.Allocate(histogram.GetNeededByteBufferCapacity());
        int length = HistogramEncoding.EncodeIntoCompressedByteBuffer(histogram, buffer);
        // ByteBuffer keeps its array to itself: read the encoded bytes back one by one.
        var bytes = new byte[length];
        buffer.Position = 0;
        for (int i = 0; i < length; i++) bytes[i] = buffer.Get();
        return Convert.ToBase64String(bytes);
    }

    /// <exception cref="FormatException">The text is not base64 or not an encoded histogram.</exception>
    public static HistogramBase Decode(string encoded)
    {
        byte[] bytes = Convert.FromBase64String(encoded);
        try
        {
            return HistogramEncoding.DecodeFromCompressedByteBuffer(ByteBuffer.Allocate(bytes), 0);
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or IOException or IndexOutOfRangeException)
        {
            throw new FormatException($"not an encoded histogram: {ex.Message}", ex);
        }
    }
}
