"""Generate text through libktx.so's C ABI with nothing but Python's ctypes — no binding, no
compiler: what any language with a C FFI does. Usage:

    python3 examples/ctypes_generate.py path/to/libktx.so MODEL.gguf "prompt" [n_predict]
"""

import ctypes as C
import sys

KTX_TOKENIZE_ADD_SPECIAL = 1  # include/ktx/ktx.h
KTX_TOKENIZE_PARSE_SPECIAL = 2


def load(lib_path):
    lib = C.CDLL(lib_path)
    p = C.c_void_p
    lib.ktx_status_get_message.argtypes = [p]
    lib.ktx_status_get_message.restype = C.c_char_p
    lib.ktx_status_release.argtypes = [p]
    lib.ktx_version_string.restype = C.c_char_p
    lib.ktx_model_load.argtypes = [C.c_char_p, p, C.POINTER(p)]
    lib.ktx_model_load.restype = p
    lib.ktx_model_release.argtypes = [p]
    lib.ktx_tokenize.argtypes = [p, C.c_char_p, C.c_size_t, C.c_uint32,
                                 C.POINTER(C.c_int32), C.c_size_t, C.POINTER(C.c_size_t)]
    lib.ktx_tokenize.restype = p
    lib.ktx_session_create.argtypes = [p, C.c_int64, C.POINTER(p)]
    lib.ktx_session_create.restype = p
    lib.ktx_session_release.argtypes = [p]
    lib.ktx_sampling_options_create.argtypes = [C.POINTER(p)]
    lib.ktx_sampling_options_create.restype = p
    lib.ktx_sampling_options_set_temperature.argtypes = [p, C.c_float]
    lib.ktx_sampling_options_set_temperature.restype = p
    lib.ktx_sampling_options_release.argtypes = [p]
    lib.ktx_sampler_create.argtypes = [p, C.POINTER(p)]
    lib.ktx_sampler_create.restype = p
    lib.ktx_sampler_release.argtypes = [p]
    lib.ktx_generate.argtypes = [p, p, C.POINTER(C.c_int32), C.c_size_t, C.c_int64, TOKEN_CB, p, p]
    lib.ktx_generate.restype = p
    return lib


# The piece as a plain pointer: ctypes would cut a c_char_p at its first NUL byte, and a piece
# may hold NULs (piece_len says how many bytes it has).
TOKEN_CB = C.CFUNCTYPE(C.c_bool, C.c_int32, C.c_void_p, C.c_size_t, C.c_void_p)


def check(lib, status):
    """A non-NULL status is an error: raise with its message, then free it."""
    if status:
        message = lib.ktx_status_get_message(status).decode()
        lib.ktx_status_release(status)
        raise RuntimeError(message)


def generate(lib_path, model_path, prompt, n_predict=32):
    lib = load(lib_path)
    model, session, options, sampler = C.c_void_p(), C.c_void_p(), C.c_void_p(), C.c_void_p()
    check(lib, lib.ktx_model_load(model_path.encode(), None, C.byref(model)))
    try:
        text = prompt.encode()
        n = C.c_size_t()
        flags = KTX_TOKENIZE_ADD_SPECIAL | KTX_TOKENIZE_PARSE_SPECIAL
        # A NULL buffer of capacity 0 asks for the size: success, with the count in n.
        check(lib, lib.ktx_tokenize(model, text, len(text), flags, None, 0, C.byref(n)))
        tokens = (C.c_int32 * n.value)()
        check(lib, lib.ktx_tokenize(model, text, len(text), flags, tokens, n.value, C.byref(n)))
        check(lib, lib.ktx_session_create(model, 0, C.byref(session)))
        check(lib, lib.ktx_sampling_options_create(C.byref(options)))
        check(lib, lib.ktx_sampling_options_set_temperature(options, 0.0))
        check(lib, lib.ktx_sampler_create(options, C.byref(sampler)))
        pieces = []

        @TOKEN_CB
        def on_token(token, piece, piece_len, user_data):
            pieces.append(C.string_at(piece, piece_len))
            return True

        check(lib, lib.ktx_generate(session, sampler, tokens, n.value, n_predict, on_token, None,
                                    None))
        return b"".join(pieces).decode("utf-8", errors="replace")
    finally:
        lib.ktx_sampler_release(sampler)
        lib.ktx_sampling_options_release(options)
        lib.ktx_session_release(session)
        lib.ktx_model_release(model)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    print(sys.argv[3] + generate(sys.argv[1], sys.argv[2], sys.argv[3],
                                 int(sys.argv[4]) if len(sys.argv) > 4 else 32))
