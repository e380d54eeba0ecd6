"""Pure tensor math: preprocessing, quantization, postprocessing. No I/O here."""
