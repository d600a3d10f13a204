"""Torch-free core that ships to the edge: flow format, tokenizer, pcap I/O, ONNX Runtime sampler, metrics."""
