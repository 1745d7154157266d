"""ktx: DeepSeek-class mixture-of-experts inference — the Python package.

Models, sessions and generation go through libktx's C ABI::

    import ktx
    model = ktx.Model("model.gguf")                  # a progress bar while it loads
    session = model.session()
    for piece in session.generate("Hello", max_tokens=32):
        print(piece, end="", flush=True)
    logits = session.logits()                         # numpy float32, shape (n_vocab,)

GGUF files (GGUFFile, write_gguf), the reference quantization formats (quantize, dequantize,
vec_dot) and the standalone Tokenizer read files directly. docs/PYTHON.md is the reference.
"""

from ._ktx import (
    CancelledError,
    ChatTemplate,
    Completion,
    Error,
    Generation,
    GGUFFile,
    InternalError,
    InvalidArgumentError,
    InvalidFileError,
    IoError,
    Model,
    ModelTokenizer,
    NotFoundError,
    OutOfMemoryError,
    Session,
    Tokenizer,
    TokenType,
    UnsupportedError,
    __version__,
    abi_version,
    backends,
    decode_batch,
    dequantize,
    quantize,
    refused_backends,
    type_size,
    vec_dot,
    vec_dot_type,
    write_gguf,
)
from ._types import BackendInfo, DeviceInfo, Placement, Plan

__all__ = [
    "BackendInfo",
    "DeviceInfo",
    "Placement",
    "Plan",
    "CancelledError",
    "ChatTemplate",
    "Completion",
    "Error",
    "GGUFFile",
    "Generation",
    "InternalError",
    "InvalidArgumentError",
    "InvalidFileError",
    "IoError",
    "Model",
    "ModelTokenizer",
    "NotFoundError",
    "OutOfMemoryError",
    "Session",
    "Tokenizer",
    "TokenType",
    "UnsupportedError",
    "__version__",
    "abi_version",
    "backends",
    "decode_batch",
    "dequantize",
    "quantize",
    "refused_backends",
    "type_size",
    "vec_dot",
    "vec_dot_type",
    "write_gguf",
]
