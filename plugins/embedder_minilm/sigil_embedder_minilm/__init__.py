"""Sigil embedder ``minilm``: all-MiniLM-L6-v2 as an int8 ONNX model shipped inside this
distribution, run with onnxruntime and tokenizers (no torch, nothing downloaded)."""

__version__ = "0.1.0"
