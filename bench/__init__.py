"""The benchmarks: generation speed, quantization/export parity, ingest throughput. Each prints its figures."""
