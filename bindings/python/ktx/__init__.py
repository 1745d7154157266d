"""ktx: DeepSeek-class mixture-of-experts inference — Python binding.

This first part reads and writes GGUF files and exposes the reference quantization formats.
"""

from ._ktx import (  # noqa: F401
    ChatTemplate,
    Error,
    GGUFFile,
    Tokenizer,
    TokenType,
    __version__,
    dequantize,
    quantize,
    type_size,
    vec_dot,
    vec_dot_type,
    write_gguf,
)

__all__ = [
    "ChatTemplate",
    "Error",
    "GGUFFile",
    "Tokenizer",
    "TokenType",
    "dequantize",
    "quantize",
    "type_size",
    "vec_dot",
    "vec_dot_type",
    "write_gguf",
]
