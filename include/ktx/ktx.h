/* ktx — the stable C ABI (C99): load a model, tokenize, run sessions, sample and generate, list
 * backends and read the plan that placed every module. docs/C_API.md is generated from this file
 * (docs/gen_c_api.py); abi/README.md says how the ABI is checked and how it may change. */
#ifndef KTX_KTX_H
#define KTX_KTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(KTX_BUILDING_LIBRARY)
#define KTX_API __attribute__((visibility("default")))
#else
#define KTX_API
#endif

/* Marks a declaration that a later release replaces: `KTX_DEPRECATED("use ktx_new")`. Deprecated
 * functions stay exported until the next major ABI version. */
#define KTX_DEPRECATED(hint) __attribute__((deprecated(hint)))

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------
 * Conventions
 *
 * Errors. Every call that can fail returns `ktx_status*`: NULL on success, otherwise a status
 * object carrying a code (ktx_status_code) and a UTF-8 message that names the function, the
 * argument, file, key or token at fault and what was expected. The caller owns the status and
 * frees it with ktx_status_release(). Statuses are plain heap objects (no thread-local "last
 * error"), so any thread may create, read and release them.
 *
 * State on error. A failing call changes nothing the caller can see: out-parameters and caller
 * buffers are left untouched and the handle is as it was before the call. The one documented
 * exception is the size out-parameter of the buffer protocol below, which reports the size
 * needed together with KTX_STATUS_BUFFER_TOO_SMALL.
 *
 * Buffers. Functions that compute text or token ids write into caller buffers:
 *   - `buf == NULL && capacity == 0` asks for the size: success, `*len` = what is needed;
 *   - a buffer that is large enough is filled: success, `*len` = what was written;
 *   - a buffer that is too small is not written: KTX_STATUS_BUFFER_TOO_SMALL, `*len` = needed.
 * Text lengths count bytes without the terminating NUL; text buffers need `*len + 1` bytes, and
 * the text is always NUL-terminated (it may also hold NUL bytes itself: use `*len`).
 *
 * Borrowed strings. Strings that belong to a handle (metadata, plan, warnings, backend names)
 * are returned as `const char*` that stay valid until that handle is released. Never free them.
 *
 * Handles. Every handle is opaque and released by its ktx_*_release function, which accepts
 * NULL and returns nothing. A model may be used from many threads at once; a session and a
 * sampler by one thread at a time (many sessions may run on many threads). Options objects are
 * read, never kept, by the calls that take them: they may be released right after.
 *
 * Units and types. Counts and byte sizes are size_t; positions, context lengths and the numbers
 * of a model are int64_t; token ids are int32_t; text is UTF-8 everywhere (paths included).
 *
 * Growth. The ABI is append-only within a major version. Structs that may grow start with
 * `size_t struct_size`, which the caller sets to sizeof the struct as its header declares; the
 * library fills only what fits. Flags arguments refuse bits they do not know.
 * ---------------------------------------------------------------------------------------------- */

/* ------------------------------------------------------------------------------------------------
 * Versions
 * ---------------------------------------------------------------------------------------------- */

/* The ABI version this header declares. A host compares it with ktx_abi_version() at run time:
 * the library is usable when the two majors are equal and the library's minor is >= the
 * header's (functions are only ever appended). */
#define KTX_ABI_VERSION_MAJOR 0
#define KTX_ABI_VERSION_MINOR 3

/* Returns (major << 16) | minor of the loaded library's ABI. Never fails. */
KTX_API uint32_t ktx_abi_version(void);

/* Returns the library's release as "MAJOR.MINOR.PATCH" (static storage, UTF-8; do not free).
 * Never fails. */
KTX_API const char* ktx_version_string(void);

/* ------------------------------------------------------------------------------------------------
 * Status
 *
 * What failed and why. A NULL status means success and reads as KTX_STATUS_OK with an empty
 * message, so the getters may be called on any returned value.
 * ---------------------------------------------------------------------------------------------- */

typedef struct ktx_status ktx_status;

/* Status codes. The first six match ktx::ErrorCode (include/ktx/error.h) one to one. */
typedef enum ktx_status_code {
  KTX_STATUS_OK = 0,               /* never carried by a status object: NULL means success */
  KTX_STATUS_INVALID_ARGUMENT = 1, /* an argument out of range, NULL where it may not be … */
  KTX_STATUS_INVALID_FILE = 2,     /* a file breaks its format (GGUF, rule file) */
  KTX_STATUS_IO_ERROR = 3,         /* the operating system refused (open, mmap, read) */
  KTX_STATUS_UNSUPPORTED = 4,      /* valid input ktx does not implement (an architecture …) */
  KTX_STATUS_OUT_OF_MEMORY = 5,
  KTX_STATUS_INTERNAL = 6,         /* a bug in ktx: please report the message */
  KTX_STATUS_CANCELLED = 7,        /* a callback asked to stop */
  KTX_STATUS_BUFFER_TOO_SMALL = 8, /* see "Buffers" above; the size out-parameter says how much */
  KTX_STATUS_NOT_FOUND = 9         /* a metadata key the model does not have */
} ktx_status_code;

/* in status: a status or NULL. Returns its code; KTX_STATUS_OK for NULL. Never fails. */
KTX_API ktx_status_code ktx_status_get_code(const ktx_status* status);

/* in status: a status or NULL. Returns its UTF-8 message, owned by the status and valid until it
 * is released; "" for NULL. Never fails. */
KTX_API const char* ktx_status_get_message(const ktx_status* status);

/* Returns the name of a code ("KTX_STATUS_NOT_FOUND"; static storage), or "KTX_STATUS_UNKNOWN"
 * for a value this library does not know. Never fails. */
KTX_API const char* ktx_status_code_name(ktx_status_code code);

/* in status: a status to free, or NULL (nothing happens). */
KTX_API void ktx_status_release(ktx_status* status);

/* ------------------------------------------------------------------------------------------------
 * Model options
 *
 * How ktx_model_load() loads a model: threads, a rule file, extra backend modules, prefaulting
 * and a progress callback. Create, set what differs from the defaults, pass to ktx_model_load(),
 * release. Not thread-safe while being changed.
 * ---------------------------------------------------------------------------------------------- */

typedef struct ktx_model_options ktx_model_options;

/* Reports loading progress. in progress: 0 to 1, non-decreasing; the first call has 0, the last
 * 1. in user_data: what was given with the callback. Return false to cancel the load, which then
 * fails with KTX_STATUS_CANCELLED. Called on the thread that calls ktx_model_load(). */
typedef bool (*ktx_progress_callback)(float progress, void* user_data);

/* out options: a new options object with the defaults (every hardware thread, no rule file: all
 * modules on the CPU, no extra backend paths, no prefault, no callback); the caller releases it.
 * Errors: KTX_STATUS_INVALID_ARGUMENT (options is NULL), KTX_STATUS_OUT_OF_MEMORY. */
KTX_API ktx_status* ktx_model_options_create(ktx_model_options** options);

/* in options: what to free, or NULL. */
KTX_API void ktx_model_options_release(ktx_model_options* options);

/* in n_threads: threads of the model's pool; 0 = every hardware thread; at most 4096.
 * Errors: KTX_STATUS_INVALID_ARGUMENT (options NULL, n_threads < 0 or > 4096); options
 * unchanged. */
KTX_API ktx_status* ktx_model_options_set_threads(ktx_model_options* options, int32_t n_threads);

/* in path: a rule file (UTF-8; see docs/RULES.md and the rules/ folder), copied; NULL or "" = none
 * (every module on the CPU with its default operator). The file is read by ktx_model_load().
 * Errors: KTX_STATUS_INVALID_ARGUMENT (options NULL); options unchanged. */
KTX_API ktx_status* ktx_model_options_set_rules_path(ktx_model_options* options, const char* path);

/* in path: a backend module (libktx-backend-*.so) or a folder of them to load besides those
 * found next to libktx (docs/BACKENDS.md), copied. Repeatable; loaded in the order added. A
 * module that cannot be loaded is left out with a model warning, not an error.
 * Errors: KTX_STATUS_INVALID_ARGUMENT (options or path NULL, path ""); options unchanged. */
KTX_API ktx_status* ktx_model_options_add_backend_path(ktx_model_options* options,
                                                       const char* path);

/* in prefault: read every weight page while loading (reported through the progress callback), so
 * the first tokens do not stall on page faults. Off by default: pages load on first use.
 * Errors: KTX_STATUS_INVALID_ARGUMENT (options NULL). */
KTX_API ktx_status* ktx_model_options_set_prefault(ktx_model_options* options, bool prefault);

/* in callback: called while loading (see ktx_progress_callback), NULL = none. in user_data:
 * passed back to it, not owned. Errors: KTX_STATUS_INVALID_ARGUMENT (options NULL). */
KTX_API ktx_status* ktx_model_options_set_progress_callback(ktx_model_options* options,
                                                            ktx_progress_callback callback,
                                                            void* user_data);

/* ------------------------------------------------------------------------------------------------
 * Models
 *
 * A loaded model: the memory-mapped GGUF file, its configuration, the plan that placed each
 * module, the operators, and the tokenizer when the file has one. Immutable once loaded and safe
 * to share between threads. Sessions hold a reference to their model, so the model handle may be
 * released before them (strings borrowed from the model handle die with it).
 * ---------------------------------------------------------------------------------------------- */

typedef struct ktx_model ktx_model;

/* What a model is. Growable: set struct_size = sizeof(ktx_model_info) before the call. */
typedef struct ktx_model_info {
  size_t struct_size;          /* in: sizeof(ktx_model_info) as the caller was compiled */
  const char* architecture;    /* general.architecture: "deepseek2", "llama" (borrowed) */
  const char* name;            /* general.name, "" when absent (borrowed) */
  int64_t n_layer;             /* transformer blocks */
  int64_t n_embd;              /* hidden size */
  int64_t n_vocab;             /* logits per token */
  int64_t n_ctx_train;         /* context length the model was trained for */
  int64_t n_head;              /* attention heads */
  int64_t n_expert;            /* routed experts per MoE layer; 0 for a dense model */
  int64_t n_expert_used;       /* experts each token is routed to */
  int64_t n_threads;           /* threads of the model's pool */
  uint64_t kv_bytes_per_token; /* KV cache bytes one token takes in a session, all layers */
} ktx_model_info;

/* Loads a model.
 * in path: a GGUF file (UTF-8); the first part of a split model opens all its parts.
 * in options: how to load, or NULL for the defaults; only read during the call.
 * out model: the loaded model; the caller releases it with ktx_model_release().
 * Errors: KTX_STATUS_INVALID_ARGUMENT (path or model NULL), KTX_STATUS_IO_ERROR (the model or
 * the rule file cannot be opened or mapped), KTX_STATUS_INVALID_FILE (the model is malformed, or
 * the rule file is, or names an operator or device that cannot serve its modules: the message
 * names the file and key or tensor, or the rule's FILE:LINE),
 * KTX_STATUS_UNSUPPORTED (an architecture or tensor type ktx does not run),
 * KTX_STATUS_CANCELLED (the progress callback returned false), KTX_STATUS_OUT_OF_MEMORY.
 * *model is untouched on error and nothing stays loaded. */
KTX_API ktx_status* ktx_model_load(const char* path, const ktx_model_options* options,
                                   ktx_model** model);

/* in model: what to release, or NULL. Sessions made from it keep the weights alive. */
KTX_API void ktx_model_release(ktx_model* model);

/* in model. inout info: struct_size set by the caller; filled up to struct_size.
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument; struct_size smaller than the first
 * version's ktx_model_info); *info untouched. */
KTX_API ktx_status* ktx_model_get_info(const ktx_model* model, ktx_model_info* info);

/* Warnings from loading: rules that matched no module, backend modules left out… Returns how
 * many; 0 for a NULL model. Never fails. */
KTX_API size_t ktx_model_warning_count(const ktx_model* model);

/* Returns warning `index` (UTF-8, "FILE:LINE: …" where it applies; borrowed), NULL when index
 * is out of range or model NULL. Never fails. */
KTX_API const char* ktx_model_warning(const ktx_model* model, size_t index);

/* ------------------------------------------------------------------------------------------------
 * Metadata
 *
 * The GGUF key/value pairs of the model file (the first part's, in file order). Values keep the
 * type stored in the file; the getters convert where nothing is lost.
 * ---------------------------------------------------------------------------------------------- */

/* Value types, with the numbers GGUF stores. */
typedef enum ktx_meta_type {
  KTX_META_UINT8 = 0,
  KTX_META_INT8 = 1,
  KTX_META_UINT16 = 2,
  KTX_META_INT16 = 3,
  KTX_META_UINT32 = 4,
  KTX_META_INT32 = 5,
  KTX_META_FLOAT32 = 6,
  KTX_META_BOOL = 7,
  KTX_META_STRING = 8,
  KTX_META_ARRAY = 9,
  KTX_META_UINT64 = 10,
  KTX_META_INT64 = 11,
  KTX_META_FLOAT64 = 12
} ktx_meta_type;

/* Returns the number of keys; 0 for a NULL model. Never fails. */
KTX_API size_t ktx_model_meta_count(const ktx_model* model);

/* Returns key `index` in file order (UTF-8, borrowed), NULL when out of range or model NULL.
 * Never fails. */
KTX_API const char* ktx_model_meta_key(const ktx_model* model, size_t index);

/* in key: UTF-8, NUL-terminated. out type: the stored type.
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument), KTX_STATUS_NOT_FOUND (no such key). */
KTX_API ktx_status* ktx_model_meta_get_type(const ktx_model* model, const char* key,
                                            ktx_meta_type* type);

/* in key. out value: the value of an integer key (any width, as long as it fits int64_t) or of a
 * BOOL key (0 or 1).
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument; the value is not an integer, or a UINT64
 * past INT64_MAX: the message says what it is), KTX_STATUS_NOT_FOUND; *value untouched. */
KTX_API ktx_status* ktx_model_meta_get_int(const ktx_model* model, const char* key, int64_t* value);

/* in key. out value: the value of a FLOAT32 or FLOAT64 key, or of an integer key converted.
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument; not a number), KTX_STATUS_NOT_FOUND. */
KTX_API ktx_status* ktx_model_meta_get_float(const ktx_model* model, const char* key,
                                             double* value);

/* in key. out value: the STRING value, NUL-terminated, borrowed from the model (the bytes as
 * stored, which GGUF says are UTF-8). out len: its length in bytes, or NULL when not wanted.
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL key/model/value; not a STRING),
 * KTX_STATUS_NOT_FOUND; *value and *len untouched. */
KTX_API ktx_status* ktx_model_meta_get_string(const ktx_model* model, const char* key,
                                              const char** value, size_t* len);

/* ------------------------------------------------------------------------------------------------
 * Plan
 *
 * Where each module of the model runs: the operator implementation, the devices for decode and
 * prefill, its options, and why — the rule line that chose it, or the default. Fixed at load
 * (ktx_model_options_set_rules_path chooses the rule file).
 * ---------------------------------------------------------------------------------------------- */

/* One module's placement; every string is borrowed from the model. Growable: set struct_size. */
typedef struct ktx_placement {
  size_t struct_size;          /* in: sizeof(ktx_placement) */
  const char* module;          /* "model.layers.3.mlp.experts" */
  const char* impl;            /* operator implementation: "cpu.experts" */
  const char* generate_device; /* for decode steps: "cpu", "cuda:0" */
  const char* prefill_device;  /* for batches of more than one token */
  const char* options_json;    /* the rule's kwargs as a JSON object of strings: "{}" when none */
  const char* why;             /* "rules.yaml:12 matched …" or the default's reason */
} ktx_placement;

/* Returns how many modules the plan places (one per module, in module-tree order); 0 for a
 * NULL model. Never fails. */
KTX_API size_t ktx_model_plan_count(const ktx_model* model);

/* in index: < ktx_model_plan_count(). inout placement: struct_size set; filled.
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument, index out of range, struct_size too
 * small); *placement untouched. */
KTX_API ktx_status* ktx_model_plan_get(const ktx_model* model, size_t index,
                                       ktx_placement* placement);

/* Returns the plan as one JSON document (UTF-8, borrowed):
 *   {"placements": [{"module", "impl", "generate_device", "prefill_device", "options", "why"}…],
 *    "warnings": ["…"]}
 * "" for a NULL model. Never fails. */
KTX_API const char* ktx_model_plan_json(const ktx_model* model);

/* ------------------------------------------------------------------------------------------------
 * Tokenizer
 *
 * The tokenizer from the model file's tokenizer.* metadata (byte-level BPE or SentencePiece) and
 * its chat template. A model without one still evaluates token ids: these calls then fail with
 * KTX_STATUS_UNSUPPORTED (the message says why), and bos/eos read -1.
 * ---------------------------------------------------------------------------------------------- */

/* ktx_tokenize flags. */
#define KTX_TOKENIZE_ADD_SPECIAL 1u   /* add BOS/EOS as the file asks (tokenizer.ggml.add_*) */
#define KTX_TOKENIZE_PARSE_SPECIAL 2u /* control tokens written in the text become their ids */

/* ktx_detokenize / ktx_token_to_piece flags. */
#define KTX_DETOKENIZE_RENDER_SPECIAL 1u /* render control tokens (BOS, <|im_end|>) as text */

/* One turn of a conversation. Frozen layout (it is passed in arrays): never grows. */
typedef struct ktx_chat_message {
  const char* role;    /* "system", "user", "assistant" (DeepSeek V3 also "tool"); UTF-8 */
  const char* content; /* UTF-8, NUL-terminated */
} ktx_chat_message;

/* Returns whether the model has a usable tokenizer; false for NULL. Never fails. */
KTX_API bool ktx_model_has_tokenizer(const ktx_model* model);

/* Turns text into token ids, with the buffer protocol (see Conventions).
 * in text: UTF-8 bytes (invalid bytes are tokenized as bytes); text_len bytes of it are read, and
 * it may be NULL when text_len is 0. in flags: KTX_TOKENIZE_*.
 * out tokens: capacity ids, or NULL with capacity 0 to ask for the count.
 * out n_tokens: how many ids the text makes.
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument, unknown flag), KTX_STATUS_UNSUPPORTED (no
 * tokenizer), KTX_STATUS_BUFFER_TOO_SMALL (*n_tokens = the count needed, tokens untouched). */
KTX_API ktx_status* ktx_tokenize(const ktx_model* model, const char* text, size_t text_len,
                                 uint32_t flags, int32_t* tokens, size_t capacity,
                                 size_t* n_tokens);

/* Turns token ids into text, with the buffer protocol. Byte-level BPE gives the text back
 * exactly; SentencePiece drops the space that its encoder put in front.
 * in tokens: n_tokens ids (NULL when n_tokens is 0). in flags: KTX_DETOKENIZE_*.
 * out buf: capacity bytes, or NULL with capacity 0. out len: the text's length in bytes.
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument, unknown flag, an id outside
 * [0, n_vocab)), KTX_STATUS_UNSUPPORTED, KTX_STATUS_BUFFER_TOO_SMALL. */
KTX_API ktx_status* ktx_detokenize(const ktx_model* model, const int32_t* tokens, size_t n_tokens,
                                   uint32_t flags, char* buf, size_t capacity, size_t* len);

/* The bytes one token contributes to decoded text (possibly part of a UTF-8 character), without
 * the leading-space removal of ktx_detokenize — for streaming. Buffer protocol.
 * in flags: KTX_DETOKENIZE_*. Errors: as ktx_detokenize. */
KTX_API ktx_status* ktx_token_to_piece(const ktx_model* model, int32_t token, uint32_t flags,
                                       char* buf, size_t capacity, size_t* len);

/* Returns the beginning-of-sequence token, -1 when the file names none, the model has no
 * tokenizer, or model is NULL. Never fails. */
KTX_API int32_t ktx_token_bos(const ktx_model* model);

/* Returns the end-of-sequence token, -1 as for ktx_token_bos. Never fails. */
KTX_API int32_t ktx_token_eos(const ktx_model* model);

/* Returns whether `token` ends generation (EOS, EOT, <|im_end|> …); false for an id out of
 * range, a model without a tokenizer, or NULL. Never fails. */
KTX_API bool ktx_token_is_eog(const ktx_model* model, int32_t token);

/* Renders a conversation with the model's chat template (recognised families: ChatML as in
 * SmolLM2, DeepSeek V2, DeepSeek V3/R1), byte for byte as its Jinja would. The result holds the
 * BOS text when the template writes it: tokenize it with KTX_TOKENIZE_PARSE_SPECIAL and without
 * KTX_TOKENIZE_ADD_SPECIAL. Buffer protocol.
 * in messages: n_messages turns (NULL when 0); role and content must not be NULL.
 * in add_generation_prompt: end with the assistant's opening, ready to generate.
 * out buf, out len: as ktx_detokenize.
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument or field), KTX_STATUS_UNSUPPORTED (no
 * tokenizer, no template, or one ktx does not render: the message quotes it),
 * KTX_STATUS_BUFFER_TOO_SMALL. */
KTX_API ktx_status* ktx_chat_apply_template(const ktx_model* model,
                                            const ktx_chat_message* messages, size_t n_messages,
                                            bool add_generation_prompt, char* buf, size_t capacity,
                                            size_t* len);

/* ------------------------------------------------------------------------------------------------
 * Sessions
 *
 * One conversation over a model: its KV cache, the tokens evaluated so far and the logits of the
 * last one. Used by one thread at a time; forward steps of different sessions of one model are
 * serialised on the model's thread pool.
 * ---------------------------------------------------------------------------------------------- */

typedef struct ktx_session ktx_session;

/* in model: the model to run (the session keeps a reference to it).
 * in n_ctx: positions the KV cache holds; 0 = the training context capped at 4096.
 * out session: the new session, empty (position 0); released with ktx_session_release().
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument, n_ctx < 0), KTX_STATUS_OUT_OF_MEMORY. */
KTX_API ktx_status* ktx_session_create(const ktx_model* model, int64_t n_ctx,
                                       ktx_session** session);

/* in session: what to release, or NULL. */
KTX_API void ktx_session_release(ktx_session* session);

/* Evaluates tokens after those already in the session: a prefill when several, a decode step
 * when one. n_tokens 0 evaluates nothing and succeeds.
 * in tokens: n_tokens ids in [0, n_vocab). out logits: NULL, or receives the last token's n_vocab
 * logits, owned by the session and valid until its next call that evaluates, resets or rewinds
 * (NULL when n_tokens is 0 and the session holds no logits).
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument, an id outside the vocabulary, or the
 * context would overflow: the message says by how much), KTX_STATUS_OUT_OF_MEMORY; the session
 * is unchanged. */
KTX_API ktx_status* ktx_session_eval(ktx_session* session, const int32_t* tokens, size_t n_tokens,
                                     const float** logits);

/* One decode step: ktx_session_eval of one token. Same arguments, errors and state. */
KTX_API ktx_status* ktx_session_decode(ktx_session* session, int32_t token, const float** logits);

/* Like ktx_session_eval but writes the logits of every token, row by row.
 * out logits: capacity floats; n_tokens * n_vocab are written.
 * Errors: as ktx_session_eval, and KTX_STATUS_BUFFER_TOO_SMALL when capacity < n_tokens *
 * n_vocab (nothing evaluated); the session and the buffer are unchanged on error. */
KTX_API ktx_status* ktx_session_eval_all(ktx_session* session, const int32_t* tokens,
                                         size_t n_tokens, float* logits, size_t capacity);

/* Returns the last evaluated token's logits (owned by the session, valid until its next call
 * that evaluates, resets or rewinds), or NULL when there are none (a new, reset or rewound
 * session). out n_logits: NULL, or receives their count (n_vocab, or 0). Never fails. */
KTX_API const float* ktx_session_get_logits(const ktx_session* session, size_t* n_logits);

/* Returns how many tokens the session holds (the next token's position); 0 for NULL. */
KTX_API int64_t ktx_session_position(const ktx_session* session);

/* Returns the session's context size in positions; 0 for NULL. */
KTX_API int64_t ktx_session_n_ctx(const ktx_session* session);

/* Returns the tokens the session holds (owned by the session, valid until its next call that
 * changes them); NULL when empty or session NULL. out n_tokens: NULL or the count. */
KTX_API const int32_t* ktx_session_get_tokens(const ktx_session* session, size_t* n_tokens);

/* Forgets every token (position 0, no logits); the cache memory is kept. NULL does nothing. */
KTX_API void ktx_session_reset(ktx_session* session);

/* Forgets the tokens from `position` on; those before stay cached. The logits are cleared:
 * evaluate again (for example the last kept token after rewinding one more) to get some.
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL session, position < 0 or > the current position);
 * the session is unchanged. */
KTX_API ktx_status* ktx_session_rewind(ktx_session* session, int64_t position);

/* One decode step of several sessions of one model at once: sessions[i] evaluates tokens[i], as
 * ktx_session_decode(sessions[i], tokens[i], NULL) would, and holds its logits afterwards
 * (ktx_session_get_logits): the same numbers, but for F32/BF16 weights in batches of 8 or more,
 * which oneDNN multiplies (within rounding). Every module runs its decode operator, on its
 * decode device. n_sessions 0 does nothing (sessions and tokens may then be NULL). The experts',
 * MLPs' and head's weights are read once for the whole batch, which can make serving several
 * conversations cheaper than stepping each (measured: docs/PERF.md, "Several sessions at once").
 * (Since ABI 0.3.) in sessions: n_sessions distinct sessions of one model. in tokens: n_sessions
 * ids. Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument, a session repeated or of another model,
 * an id outside the vocabulary, a full context: the message names the session's index), checked
 * before anything runs; KTX_STATUS_OUT_OF_MEMORY. Every session is then unchanged. */
KTX_API ktx_status* ktx_session_decode_batch(ktx_session* const* sessions, size_t n_sessions,
                                             const int32_t* tokens);

/* A new session over the same model holding a copy of this one's tokens, logits and cache: to
 * branch a conversation, or to try several continuations of one prompt evaluated once. The two
 * then evolve independently. (Since ABI 0.3.)
 * in session: the session to copy. in n_ctx: the new session's context; 0 = the same as
 * session's; otherwise at least its position. out fork: the new session.
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument, n_ctx < 0 or below the position),
 * KTX_STATUS_OUT_OF_MEMORY, KTX_STATUS_INTERNAL (an accelerator's copy failed). */
KTX_API ktx_status* ktx_session_fork(const ktx_session* session, int64_t n_ctx, ktx_session** fork);

/* Saves the session's state — its tokens, its logits and the cache rows they filled — to a
 * session file at path (a GGUF file of its own kind: docs/SESSIONS.md, "The file"), so that
 * a long prompt evaluated once can be restored later, in another process. Written through a
 * temporary file and a rename: an existing file is replaced whole or not at all. (Since ABI 0.3.)
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument; path names the model's own file, through a
 * link too, or a directory or device), KTX_STATUS_IO_ERROR (the file cannot be written),
 * KTX_STATUS_OUT_OF_MEMORY, KTX_STATUS_INTERNAL (an accelerator's copy failed). */
KTX_API ktx_status* ktx_session_save(const ktx_session* session, const char* path);

/* Replaces the session's state with one saved by ktx_session_save. The file must have been saved
 * from the same model file (checked by a fingerprint of its metadata, every tensor's name, type
 * and shape, and three 64-byte windows of every tensor's data; how the model is placed may
 * differ) and its tokens must fit the session's n_ctx.
 * Every tensor's shape and checksum are checked before the session changes. (Since ABI 0.3.)
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument, saved from another model, more tokens
 * than n_ctx: the message says how many), KTX_STATUS_INVALID_FILE (not a session file, damaged
 * or truncated: the message names the tensor or byte offset), KTX_STATUS_UNSUPPORTED (a session
 * file version other than this library's), KTX_STATUS_IO_ERROR (cannot be opened): the session is
 * then unchanged. KTX_STATUS_INTERNAL when an accelerator's copy fails halfway: the session is then
 * empty. */
KTX_API ktx_status* ktx_session_load(ktx_session* session, const char* path);

/* ------------------------------------------------------------------------------------------------
 * Sampling
 *
 * Choosing the next token from logits: penalties, then greedy or temperature sampling with top-k,
 * top-p and min-p, in llama.cpp's order. A seed makes a run reproducible.
 * ---------------------------------------------------------------------------------------------- */

typedef struct ktx_sampling_options ktx_sampling_options;
typedef struct ktx_sampler ktx_sampler;

/* out options: new sampling options with the defaults (temperature 0.8, top_k 40, top_p 0.95,
 * min_p 0.05, penalties off with a window of 64, a fixed seed). Errors: INVALID_ARGUMENT (NULL),
 * OUT_OF_MEMORY. */
KTX_API ktx_status* ktx_sampling_options_create(ktx_sampling_options** options);

/* in options: what to free, or NULL. */
KTX_API void ktx_sampling_options_release(ktx_sampling_options* options);

/* Each setter: KTX_STATUS_INVALID_ARGUMENT when options is NULL or the value is out of range (the
 * message names the parameter and the range); the options are then unchanged. */

/* in temperature: <= 0 picks the most likely token (greedy); must be finite. */
KTX_API ktx_status* ktx_sampling_options_set_temperature(ktx_sampling_options* options,
                                                         float temperature);
/* in top_k: keep the k most likely tokens; <= 0 turns it off. */
KTX_API ktx_status* ktx_sampling_options_set_top_k(ktx_sampling_options* options, int32_t top_k);
/* in top_p: keep the smallest set whose probability reaches top_p, in (0, 1]; 1 = off. */
KTX_API ktx_status* ktx_sampling_options_set_top_p(ktx_sampling_options* options, float top_p);
/* in min_p: keep tokens with p >= min_p * p_max, in [0, 1]; 0 = off. */
KTX_API ktx_status* ktx_sampling_options_set_min_p(ktx_sampling_options* options, float min_p);
/* in repeat_penalty: > 0; divides positive / multiplies negative logits of recent tokens;
 * 1 = off. */
KTX_API ktx_status* ktx_sampling_options_set_repeat_penalty(ktx_sampling_options* options,
                                                            float repeat_penalty);
/* in presence_penalty: subtracted once from the logit of every recent token; 0 = off. */
KTX_API ktx_status* ktx_sampling_options_set_presence_penalty(ktx_sampling_options* options,
                                                              float presence_penalty);
/* in frequency_penalty: subtracted per occurrence of a recent token; 0 = off. */
KTX_API ktx_status* ktx_sampling_options_set_frequency_penalty(ktx_sampling_options* options,
                                                               float frequency_penalty);
/* in penalty_last_n: how many recent tokens the penalties look at, >= 0. */
KTX_API ktx_status* ktx_sampling_options_set_penalty_last_n(ktx_sampling_options* options,
                                                            int32_t penalty_last_n);
/* in seed: the random generator's seed. */
KTX_API ktx_status* ktx_sampling_options_set_seed(ktx_sampling_options* options, uint64_t seed);

/* in options: the parameters (copied), or NULL for the defaults.
 * out sampler: a new sampler with an empty history; released with ktx_sampler_release().
 * Errors: INVALID_ARGUMENT (sampler NULL), OUT_OF_MEMORY. */
KTX_API ktx_status* ktx_sampler_create(const ktx_sampling_options* options, ktx_sampler** sampler);

/* in sampler: what to free, or NULL. */
KTX_API void ktx_sampler_release(ktx_sampler* sampler);

/* Picks a token. in logits: n_logits values (not modified), e.g. from ktx_session_eval.
 * out token: the chosen id in [0, n_logits). It is not added to the history: call
 * ktx_sampler_accept (ktx_generate does both).
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument, n_logits 0 or past INT32_MAX, a logit
 * that is NaN or +inf — the model's arithmetic overflowed —, or every logit -inf); the
 * sampler's random state is unchanged on error. */
KTX_API ktx_status* ktx_sampler_sample(ktx_sampler* sampler, const float* logits, size_t n_logits,
                                       int32_t* token);

/* Adds a token to the history the penalties look at (a prompt token, or one just sampled).
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL sampler, token < 0), KTX_STATUS_OUT_OF_MEMORY. */
KTX_API ktx_status* ktx_sampler_accept(ktx_sampler* sampler, int32_t token);

/* Clears the history and reseeds the generator with the options' seed. NULL does nothing. */
KTX_API void ktx_sampler_reset(ktx_sampler* sampler);

/* ------------------------------------------------------------------------------------------------
 * Generation
 *
 * The loop of `ktx generate`: evaluate the prompt, then sample and decode token by token until
 * n_predict tokens, an end-of-generation token, a full context or the callback says stop —
 * streaming text as it becomes valid UTF-8.
 * ---------------------------------------------------------------------------------------------- */

/* Why generation stopped (ktx_generate_stats.stop_reason). */
typedef enum ktx_stop_reason {
  KTX_STOP_LENGTH = 0,      /* n_predict tokens were generated */
  KTX_STOP_EOG = 1,         /* the model produced an end-of-generation token (not streamed) */
  KTX_STOP_CANCELLED = 2,   /* the token callback returned false */
  KTX_STOP_CONTEXT_FULL = 3 /* the session's context is full */
} ktx_stop_reason;

/* Receives each generated token and the text it completes.
 * in token: the id, or -1 for a last call carrying the bytes of an incomplete UTF-8 character
 * at the end (its return value is ignored).
 * in piece: piece_len bytes of UTF-8 (possibly 0 while a character is incomplete), NUL-
 * terminated, valid only during the call. in user_data: as given to ktx_generate.
 * Return false to stop; ktx_generate then succeeds with KTX_STOP_CANCELLED. */
typedef bool (*ktx_token_callback)(int32_t token, const char* piece, size_t piece_len,
                                   void* user_data);

/* What a generation did. Growable: set struct_size = sizeof(ktx_generate_stats). */
typedef struct ktx_generate_stats {
  size_t struct_size;     /* in: sizeof(ktx_generate_stats) */
  int64_t n_prompt;       /* prompt tokens evaluated */
  int64_t n_generated;    /* tokens generated and streamed (the end-of-generation one not) */
  double prefill_seconds; /* wall time of the prompt's evaluation */
  double decode_seconds;  /* wall time of sampling and decoding */
  int32_t stop_reason;    /* a ktx_stop_reason */
} ktx_generate_stats;

/* Generates a continuation.
 * inout session: the prompt is evaluated after what it holds; afterwards it holds the prompt and
 * the generated tokens — but for the last one when n_predict or the callback ended generation
 * (sampled, never evaluated); the end-of-generation token is never added.
 * inout sampler: sees the prompt and generated tokens (ktx_sampler_accept).
 * in prompt: n_prompt ids; may be empty (NULL, 0) when the session already holds logits.
 * in n_predict: the most tokens to generate, >= 0.
 * in on_token: called for each generated token, or NULL. in user_data: passed to it.
 * out stats: NULL, or filled up to its struct_size.
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL session/sampler, n_predict < 0, a bad token id, the
 * prompt overflows the context, nothing to generate from), KTX_STATUS_UNSUPPORTED (the model
 * has no tokenizer): these are checked before anything runs, so the session, the sampler and
 * *stats are unchanged. KTX_STATUS_OUT_OF_MEMORY, KTX_STATUS_INTERNAL, or
 * KTX_STATUS_INVALID_FILE (the model's logits turned NaN or infinite: a weight or an activation
 * overflowed) during the loop leave what was evaluated so far (ktx_session_position tells) and
 * *stats untouched. */
KTX_API ktx_status* ktx_generate(ktx_session* session, ktx_sampler* sampler, const int32_t* prompt,
                                 size_t n_prompt, int64_t n_predict, ktx_token_callback on_token,
                                 void* user_data, ktx_generate_stats* stats);

/* ------------------------------------------------------------------------------------------------
 * Backends and devices
 *
 * The backends a model uses (the built-in CPU backend first, then modules such as
 * libktx-backend-ref.so), their devices and operators, and the modules that were left out and
 * why — either a model's (borrowed) or a list loaded on its own, as `ktx backends` does.
 * ---------------------------------------------------------------------------------------------- */

typedef struct ktx_backend_list ktx_backend_list;

/* One backend. Strings are borrowed from the list. Growable: set struct_size. */
typedef struct ktx_backend_info {
  size_t struct_size;      /* in: sizeof(ktx_backend_info) */
  const char* name;        /* "cpu", "ref" */
  const char* path;        /* the module file; "" for a built-in backend */
  const char* description; /* may be "" */
  int32_t score;           /* what the module's score() said (higher is preferred) */
  int32_t n_devices;
  int32_t n_operators; /* operator implementations it registered */
  int32_t has_streams; /* 1 when it runs asynchronously on streams, else 0 */
} ktx_backend_info;

/* One device of a backend. Growable: set struct_size. */
typedef struct ktx_device_info {
  size_t struct_size;      /* in: sizeof(ktx_device_info) */
  const char* name;        /* "cpu", "cuda:0" (borrowed) */
  const char* description; /* may be "" (borrowed) */
  int64_t free_bytes;      /* memory free now, -1 when the backend does not say */
  int64_t total_bytes;     /* -1 when the backend does not say */
} ktx_device_info;

/* Loads the backends on their own (no model): the built-in CPU backend, the modules in the
 * options' backend paths (or none when options is NULL), then those found in the default
 * folders and KTX_BACKEND_PATH. out list: released with ktx_backend_list_release().
 * Errors: KTX_STATUS_INVALID_ARGUMENT (list NULL), KTX_STATUS_INTERNAL (the CPU backend failed).
 * Modules that cannot be loaded are reported by ktx_backend_list_refused, not as errors. */
KTX_API ktx_status* ktx_backend_list_load(const ktx_model_options* options,
                                          ktx_backend_list** list);

/* Returns the backends of a model, borrowed (valid until the model is released; never pass it
 * to ktx_backend_list_release); NULL for a NULL model. Never fails. */
KTX_API const ktx_backend_list* ktx_model_get_backends(const ktx_model* model);

/* in list: a list from ktx_backend_list_load to free, or NULL. */
KTX_API void ktx_backend_list_release(ktx_backend_list* list);

/* Returns the number of backends; 0 for NULL. Never fails. */
KTX_API size_t ktx_backend_list_count(const ktx_backend_list* list);

/* in index: < ktx_backend_list_count(). inout info: struct_size set; filled.
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument, index out of range, struct_size too
 * small); *info untouched. */
KTX_API ktx_status* ktx_backend_list_get(const ktx_backend_list* list, size_t index,
                                         ktx_backend_info* info);

/* in backend: a backend index. in device: < its n_devices. inout info: struct_size set; filled
 * (memory figures are asked of the backend now).
 * Errors: KTX_STATUS_INVALID_ARGUMENT (NULL argument, an index out of range, struct_size too
 * small), KTX_STATUS_INTERNAL (the backend failed to answer); *info untouched. */
KTX_API ktx_status* ktx_backend_list_get_device(const ktx_backend_list* list, size_t backend,
                                                size_t device, ktx_device_info* info);

/* Returns operator `index` of backend `backend` ("cpu.mla_attention"; sorted; borrowed), NULL
 * when an index is out of range or list NULL. Never fails. */
KTX_API const char* ktx_backend_list_operator(const ktx_backend_list* list, size_t backend,
                                              size_t index);

/* Returns how many module files were considered and left out; 0 for NULL. Never fails. */
KTX_API size_t ktx_backend_list_refused_count(const ktx_backend_list* list);

/* Returns why module file `index` was left out ("PATH: …", prefixed "note: " for expected misses
 * such as a module whose score() is 0 on this machine; borrowed), NULL when out of range. */
KTX_API const char* ktx_backend_list_refused(const ktx_backend_list* list, size_t index);

#ifdef __cplusplus
}
#endif

#endif /* KTX_KTX_H */
