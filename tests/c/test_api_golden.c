/* The C API over the golden DeepSeek-V2-Lite-style model (tests/data/golden/ds2_lite.gguf, which
 * has no tokenizer): versions, statuses, options, loading with progress and cancel, info,
 * metadata, plan, backends, sessions (prefill, decode, rewind, reset) with logits checked against
 * the independent NumPy reference and against one prefill, sampling, and every error path —
 * right code, a message, out-parameters untouched, handles unchanged. Compiled as C99 against
 * ktx.h alone.
 *
 * usage: test_api_golden GOLDEN_DIR RULES_DIR */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ktx/ktx.h"

static const int32_t kTokens[7] = {1, 17, 42, 60, 5, 17, 33};  /* manifest.json "tokens" */
static const int32_t kArgmax[7] = {30, 63, 49, 27, 60, 7, 32}; /* manifest.json "argmax" */
enum { kNTokens = 7, kVocab = 64 };

static char g_model_path[4096];
static char g_golden_dir[2048];
static char g_rules_dir[2048];

/* Reads a float32 [rows][cols] .npy file (version 1, little-endian, C order). */
static float* read_npy(const char* path, size_t expect) {
  unsigned char head[10];
  size_t header_len;
  float* data;
  FILE* f = fopen(path, "rb");
  if (f == NULL) return NULL;
  if (fread(head, 1, 10, f) != 10 || memcmp(head, "\x93NUMPY", 6) != 0 || head[6] != 1) {
    fclose(f);
    return NULL;
  }
  header_len = (size_t)head[8] | ((size_t)head[9] << 8);
  fseek(f, (long)(10 + header_len), SEEK_SET);
  data = (float*)malloc(expect * sizeof(float));
  if (data != NULL && fread(data, sizeof(float), expect, f) != expect) {
    free(data);
    data = NULL;
  }
  fclose(f);
  return data;
}

static float max_abs_diff(const float* a, const float* b, size_t n) {
  float m = 0.0f;
  size_t i;
  for (i = 0; i < n; ++i) {
    const float d = fabsf(a[i] - b[i]);
    if (d > m) m = d;
  }
  return m;
}

static int32_t argmax(const float* v, size_t n) {
  size_t i, best = 0;
  for (i = 1; i < n; ++i) {
    if (v[i] > v[best]) best = i;
  }
  return (int32_t)best;
}

/* --- versions and statuses ------------------------------------------------------------------ */

static void test_versions_and_status(void) {
  const uint32_t abi = ktx_abi_version();
  CHECK(abi >> 16 == KTX_ABI_VERSION_MAJOR);
  CHECK((abi & 0xffffu) == KTX_ABI_VERSION_MINOR);
  CHECK(strlen(ktx_version_string()) >= 5);

  CHECK(ktx_status_get_code(NULL) == KTX_STATUS_OK);
  CHECK(strcmp(ktx_status_get_message(NULL), "") == 0);
  ktx_status_release(NULL);
  CHECK(strcmp(ktx_status_code_name(KTX_STATUS_CANCELLED), "KTX_STATUS_CANCELLED") == 0);
  CHECK(strcmp(ktx_status_code_name(KTX_STATUS_NOT_FOUND), "KTX_STATUS_NOT_FOUND") == 0);
  CHECK(strcmp(ktx_status_code_name((ktx_status_code)1234), "KTX_STATUS_UNKNOWN") == 0);
}

/* Every release function accepts NULL; every "never fails" getter answers NULL handles. */
static void test_null_handles(void) {
  size_t n = 99;
  ktx_status_release(NULL);
  ktx_model_options_release(NULL);
  ktx_model_release(NULL);
  ktx_session_release(NULL);
  ktx_sampling_options_release(NULL);
  ktx_sampler_release(NULL);
  ktx_backend_list_release(NULL);
  ktx_session_reset(NULL);
  ktx_sampler_reset(NULL);
  CHECK(ktx_model_warning_count(NULL) == 0);
  CHECK(ktx_model_warning(NULL, 0) == NULL);
  CHECK(ktx_model_meta_count(NULL) == 0);
  CHECK(ktx_model_meta_key(NULL, 0) == NULL);
  CHECK(ktx_model_plan_count(NULL) == 0);
  CHECK(strcmp(ktx_model_plan_json(NULL), "") == 0);
  CHECK(!ktx_model_has_tokenizer(NULL));
  CHECK(ktx_token_bos(NULL) == -1);
  CHECK(ktx_token_eos(NULL) == -1);
  CHECK(!ktx_token_is_eog(NULL, 0));
  CHECK(ktx_session_get_logits(NULL, &n) == NULL && n == 0);
  CHECK(ktx_session_position(NULL) == 0);
  CHECK(ktx_session_n_ctx(NULL) == 0);
  n = 99;
  CHECK(ktx_session_get_tokens(NULL, &n) == NULL && n == 0);
  CHECK(ktx_model_get_backends(NULL) == NULL);
  CHECK(ktx_backend_list_count(NULL) == 0);
  CHECK(ktx_backend_list_operator(NULL, 0, 0) == NULL);
  CHECK(ktx_backend_list_refused_count(NULL) == 0);
  CHECK(ktx_backend_list_refused(NULL, 0) == NULL);
}

/* --- options and loading ---------------------------------------------------------------------- */

typedef struct Progress {
  int calls;
  float first, last;
  int decreasing;
  float cancel_at;   /* return false once progress >= this; > 1: never */
  int cancel_inside; /* return false for 0 < progress < 1 */
} Progress;

static bool on_progress(float progress, void* user_data) {
  Progress* p = (Progress*)user_data;
  if (p->calls == 0) p->first = progress;
  if (p->calls > 0 && progress < p->last) p->decreasing = 1;
  p->last = progress;
  ++p->calls;
  if (p->cancel_inside && progress > 0.0f && progress < 1.0f) return false;
  return progress < p->cancel_at;
}

static void test_options_and_load_errors(void) {
  ktx_model_options* options = NULL;
  ktx_model* const sentinel = (ktx_model*)(uintptr_t)0x1234;
  ktx_model* model = sentinel;
  Progress progress;
  char path[4200];
  FILE* f;

  EXPECT_CODE(ktx_model_options_create(NULL), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_OK(ktx_model_options_create(&options));
  CHECK(options != NULL);
  EXPECT_CODE(ktx_model_options_set_threads(options, -1), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_model_options_set_threads(NULL, 2), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_OK(ktx_model_options_set_threads(options, 2));
  EXPECT_CODE(ktx_model_options_add_backend_path(options, NULL), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_model_options_add_backend_path(options, ""), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_model_options_set_rules_path(NULL, "x"), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_model_options_set_prefault(NULL, true), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_model_options_set_progress_callback(NULL, on_progress, NULL),
              KTX_STATUS_INVALID_ARGUMENT);

  /* Bad arguments and files: the right code, *model untouched. */
  EXPECT_CODE(ktx_model_load(NULL, options, &model), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_model_load(g_model_path, options, NULL), KTX_STATUS_INVALID_ARGUMENT);
  snprintf(path, sizeof path, "%s/does-not-exist.gguf", g_golden_dir);
  EXPECT_CODE(ktx_model_load(path, options, &model), KTX_STATUS_IO_ERROR);
  snprintf(path, sizeof path, "ktx_c_api_test_not_a_model.gguf");
  f = fopen(path, "wb");
  CHECK(f != NULL);
  if (f != NULL) {
    fputs("this is not a GGUF file, just some bytes to refuse", f);
    fclose(f);
  }
  EXPECT_CODE(ktx_model_load(path, options, &model), KTX_STATUS_INVALID_FILE);
  remove(path);
  EXPECT_OK(ktx_model_options_set_rules_path(options, "no-such-rules.yaml"));
  EXPECT_CODE(ktx_model_load(g_model_path, options, &model), KTX_STATUS_IO_ERROR);
  EXPECT_OK(ktx_model_options_set_rules_path(options, NULL));
  CHECK(model == sentinel);

  /* Progress: 0 first, 1 last, never decreasing. */
  memset(&progress, 0, sizeof progress);
  progress.cancel_at = 2.0f;
  EXPECT_OK(ktx_model_options_set_progress_callback(options, on_progress, &progress));
  EXPECT_OK(ktx_model_options_set_prefault(options, true));
  EXPECT_OK(ktx_model_load(g_model_path, options, &model));
  CHECK(model != sentinel && model != NULL);
  CHECK(progress.calls >= 2 && progress.first == 0.0f && progress.last == 1.0f);
  CHECK(!progress.decreasing);
  ktx_model_release(model);

  /* Cancelled before, while prefaulting, and at the end: KTX_STATUS_CANCELLED, nothing out. */
  model = sentinel;
  memset(&progress, 0, sizeof progress);
  progress.cancel_at = 0.0f;
  EXPECT_CODE(ktx_model_load(g_model_path, options, &model), KTX_STATUS_CANCELLED);
  CHECK(progress.calls == 1);
  memset(&progress, 0, sizeof progress);
  progress.cancel_at = 2.0f;
  progress.cancel_inside = 1;
  EXPECT_CODE(ktx_model_load(g_model_path, options, &model), KTX_STATUS_CANCELLED);
  CHECK(progress.last > 0.0f && progress.last < 1.0f);
  memset(&progress, 0, sizeof progress);
  progress.cancel_at = 1.0f;
  EXPECT_OK(ktx_model_options_set_prefault(options, false));
  EXPECT_CODE(ktx_model_load(g_model_path, options, &model), KTX_STATUS_CANCELLED);
  CHECK(progress.calls == 2 && progress.last == 1.0f);
  CHECK(model == sentinel);

  ktx_model_options_release(options);
}

static ktx_model* load_model(void) {
  ktx_model_options* options = NULL;
  ktx_model* model = NULL;
  EXPECT_OK(ktx_model_options_create(&options));
  EXPECT_OK(ktx_model_options_set_threads(options, 2));
  EXPECT_OK(ktx_model_load(g_model_path, options, &model));
  ktx_model_options_release(options); /* options are not kept */
  if (model == NULL) {
    fprintf(stderr, "cannot load %s: giving up\n", g_model_path);
    exit(1);
  }
  return model;
}

/* --- info, metadata, plan, backends ------------------------------------------------------------
 */

static void test_info(const ktx_model* model) {
  ktx_model_info info;
  /* A caller compiled against a later header has a larger struct: only what this library knows
   * is written, the rest stays as it was. */
  unsigned char bigger[sizeof(ktx_model_info) + 16];
  ktx_model_info* big = (ktx_model_info*)(void*)bigger;

  memset(&info, 0xAB, sizeof info);
  info.struct_size = 8;
  EXPECT_CODE(ktx_model_get_info(model, &info), KTX_STATUS_INVALID_ARGUMENT);
  CHECK(info.struct_size == 8 && all_bytes((char*)&info + 8, sizeof info - 8, 0xAB));
  EXPECT_CODE(ktx_model_get_info(NULL, &info), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_model_get_info(model, NULL), KTX_STATUS_INVALID_ARGUMENT);

  info.struct_size = sizeof info;
  EXPECT_OK(ktx_model_get_info(model, &info));
  CHECK(info.struct_size == sizeof info);
  CHECK(strcmp(info.architecture, "deepseek2") == 0);
  CHECK(info.name != NULL);
  CHECK(info.n_layer == 3 && info.n_embd == 32 && info.n_vocab == kVocab && info.n_head == 4);
  CHECK(info.n_expert == 8 && info.n_expert_used == 2);
  CHECK(info.n_ctx_train > 0);
  CHECK(info.n_threads == 2);
  /* MLA caches kv_lora_rank + qk_rope_head_dim = 24 + 8 floats per layer. */
  CHECK(info.kv_bytes_per_token == 3u * (24u + 8u) * 4u);

  memset(bigger, 0xCD, sizeof bigger);
  big->struct_size = sizeof bigger;
  EXPECT_OK(ktx_model_get_info(model, big));
  CHECK(big->struct_size == sizeof bigger && big->n_vocab == kVocab);
  CHECK(all_bytes(bigger + sizeof(ktx_model_info), 16, 0xCD));

  CHECK(ktx_model_warning_count(model) == 0);
  CHECK(ktx_model_warning(model, 0) == NULL);
}

static void test_metadata(const ktx_model* model) {
  const size_t n = ktx_model_meta_count(model);
  size_t i, len = 77;
  int found_arch = 0;
  ktx_meta_type type = (ktx_meta_type)99;
  int64_t iv = -5;
  double fv = -5.0;
  const char* sv = NULL;

  CHECK(n > 10);
  for (i = 0; i < n; ++i) {
    const char* key = ktx_model_meta_key(model, i);
    CHECK(key != NULL);
    if (key != NULL && strcmp(key, "general.architecture") == 0) found_arch = 1;
  }
  CHECK(found_arch);
  CHECK(ktx_model_meta_key(model, n) == NULL);

  EXPECT_OK(ktx_model_meta_get_type(model, "general.architecture", &type));
  CHECK(type == KTX_META_STRING);
  EXPECT_OK(ktx_model_meta_get_string(model, "general.architecture", &sv, &len));
  CHECK(sv != NULL && strcmp(sv, "deepseek2") == 0 && len == 9);
  EXPECT_OK(ktx_model_meta_get_string(model, "general.architecture", &sv, NULL));
  EXPECT_OK(ktx_model_meta_get_int(model, "deepseek2.block_count", &iv));
  CHECK(iv == 3);
  EXPECT_OK(ktx_model_meta_get_float(model, "deepseek2.block_count", &fv));
  CHECK(fv == 3.0);
  EXPECT_OK(ktx_model_meta_get_float(model, "deepseek2.attention.layer_norm_rms_epsilon", &fv));
  CHECK(fv > 0.0 && fv < 1e-3);
  EXPECT_OK(ktx_model_meta_get_type(model, "deepseek2.attention.layer_norm_rms_epsilon", &type));
  CHECK(type == KTX_META_FLOAT32);

  /* Errors leave the out-parameters untouched. */
  iv = -5;
  fv = -5.0;
  sv = NULL;
  len = 77;
  type = (ktx_meta_type)99;
  EXPECT_CODE(ktx_model_meta_get_int(model, "no.such.key", &iv), KTX_STATUS_NOT_FOUND);
  EXPECT_CODE(ktx_model_meta_get_type(model, "no.such.key", &type), KTX_STATUS_NOT_FOUND);
  EXPECT_CODE(ktx_model_meta_get_int(model, "general.architecture", &iv),
              KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_model_meta_get_float(model, "general.architecture", &fv),
              KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_model_meta_get_string(model, "deepseek2.block_count", &sv, &len),
              KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_model_meta_get_string(model, "no.such.key", &sv, &len), KTX_STATUS_NOT_FOUND);
  EXPECT_CODE(ktx_model_meta_get_int(NULL, "deepseek2.block_count", &iv),
              KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_model_meta_get_int(model, NULL, &iv), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_model_meta_get_int(model, "deepseek2.block_count", NULL),
              KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_model_meta_get_string(model, "general.architecture", NULL, &len),
              KTX_STATUS_INVALID_ARGUMENT);
  CHECK(iv == -5 && fv == -5.0 && sv == NULL && len == 77 && type == (ktx_meta_type)99);
}

static void test_plan(const ktx_model* model) {
  const size_t n = ktx_model_plan_count(model);
  size_t i;
  int experts = 0;
  ktx_placement p;
  const char* json = ktx_model_plan_json(model);

  CHECK(n == 19); /* embed, 3 layers (2 norms, attention, mlp or gate+experts+shared), norm, head */
  for (i = 0; i < n; ++i) {
    p.struct_size = sizeof p;
    EXPECT_OK(ktx_model_plan_get(model, i, &p));
    CHECK(p.module != NULL && p.impl != NULL && p.why != NULL && p.options_json != NULL);
    CHECK(strcmp(p.generate_device, "cpu") == 0 && strcmp(p.prefill_device, "cpu") == 0);
    if (strcmp(p.module, "model.layers.1.mlp.experts") == 0) {
      experts = 1;
      CHECK(strcmp(p.impl, "cpu.experts") == 0);
      CHECK(strcmp(p.options_json, "{}") == 0);
    }
  }
  CHECK(experts);
  memset(&p, 0xAB, sizeof p);
  p.struct_size = sizeof p;
  EXPECT_CODE(ktx_model_plan_get(model, n, &p), KTX_STATUS_INVALID_ARGUMENT);
  CHECK(all_bytes((char*)&p + sizeof(size_t), sizeof p - sizeof(size_t), 0xAB));
  EXPECT_CODE(ktx_model_plan_get(model, 0, NULL), KTX_STATUS_INVALID_ARGUMENT);
  CHECK(json[0] == '{' && strstr(json, "\"placements\"") != NULL);
  CHECK(strstr(json, "\"module\": \"model.layers.2.mlp.experts\"") != NULL);
}

/* A rule file decides the attention operator's options; the plan says which line chose it. */
static void test_rules(void) {
  ktx_model_options* options = NULL;
  ktx_model* model = NULL;
  char rules[4200];
  size_t i;
  int seen = 0;
  snprintf(rules, sizeof rules, "%s/cpu-mla-always-absorb.yaml", g_rules_dir);
  EXPECT_OK(ktx_model_options_create(&options));
  EXPECT_OK(ktx_model_options_set_threads(options, 1));
  EXPECT_OK(ktx_model_options_set_rules_path(options, rules));
  EXPECT_OK(ktx_model_load(g_model_path, options, &model));
  ktx_model_options_release(options);
  for (i = 0; i < ktx_model_plan_count(model); ++i) {
    ktx_placement p;
    p.struct_size = sizeof p;
    EXPECT_OK(ktx_model_plan_get(model, i, &p));
    if (strcmp(p.module, "model.layers.0.self_attn") == 0) {
      seen = 1;
      CHECK(strcmp(p.impl, "cpu.mla_attention") == 0);
      CHECK(strcmp(p.options_json, "{\"absorb\": \"always\"}") == 0);
      CHECK(strstr(p.why, "cpu-mla-always-absorb.yaml:") != NULL);
    }
  }
  CHECK(seen);
  CHECK(strstr(ktx_model_plan_json(model), "\"absorb\": \"always\"") != NULL);
  ktx_model_release(model);
}

static void check_backend_list(const ktx_backend_list* list) {
  ktx_backend_info info;
  ktx_device_info device;
  const size_t n = ktx_backend_list_count(list);
  size_t i;
  CHECK(n >= 1);
  info.struct_size = sizeof info;
  EXPECT_OK(ktx_backend_list_get(list, 0, &info));
  CHECK(strcmp(info.name, "cpu") == 0 && strcmp(info.path, "") == 0);
  CHECK(info.n_devices == 1 && info.n_operators > 0 && info.has_streams == 0);
  CHECK(ktx_backend_list_operator(list, 0, 0) != NULL);
  CHECK(ktx_backend_list_operator(list, 0, (size_t)info.n_operators) == NULL);
  for (i = 0; i < (size_t)info.n_operators; ++i) {
    const char* op = ktx_backend_list_operator(list, 0, i);
    CHECK(op != NULL && strncmp(op, "cpu.", 4) == 0);
  }
  device.struct_size = sizeof device;
  EXPECT_OK(ktx_backend_list_get_device(list, 0, 0, &device));
  CHECK(strcmp(device.name, "cpu") == 0);
  for (i = 1; i < n; ++i) {
    info.struct_size = sizeof info;
    EXPECT_OK(ktx_backend_list_get(list, i, &info));
    CHECK(info.name[0] != '\0' && info.path[0] != '\0');
  }
  memset(&info, 0xAB, sizeof info);
  info.struct_size = sizeof info;
  EXPECT_CODE(ktx_backend_list_get(list, n, &info), KTX_STATUS_INVALID_ARGUMENT);
  CHECK(all_bytes((char*)&info + sizeof(size_t), sizeof info - sizeof(size_t), 0xAB));
  EXPECT_CODE(ktx_backend_list_get_device(list, 0, 1, &device), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_backend_list_get_device(list, n, 0, &device), KTX_STATUS_INVALID_ARGUMENT);
  for (i = 0; i < ktx_backend_list_refused_count(list); ++i) {
    CHECK(ktx_backend_list_refused(list, i) != NULL);
  }
}

static void test_backends(const ktx_model* model) {
  ktx_backend_list* list = NULL;
  check_backend_list(ktx_model_get_backends(model));
  EXPECT_CODE(ktx_backend_list_load(NULL, NULL), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_OK(ktx_backend_list_load(NULL, &list));
  check_backend_list(list);
  ktx_backend_list_release(list);
}

/* --- tokenizer calls on a model without a tokenizer ------------------------------------------- */

static void test_no_tokenizer(const ktx_model* model) {
  int32_t tokens[4] = {-7, -7, -7, -7};
  char text[16];
  size_t n = 55;
  ktx_chat_message turn;
  turn.role = "user";
  turn.content = "hi";
  memset(text, 'x', sizeof text);
  CHECK(!ktx_model_has_tokenizer(model));
  CHECK(ktx_token_bos(model) == -1 && ktx_token_eos(model) == -1);
  CHECK(!ktx_token_is_eog(model, 0));
  EXPECT_CODE(ktx_tokenize(model, "hi", 2, 0, tokens, 4, &n), KTX_STATUS_UNSUPPORTED);
  EXPECT_CODE(ktx_tokenize(model, "hi", 2, 0x80u, tokens, 4, &n), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_tokenize(model, NULL, 2, 0, tokens, 4, &n), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_detokenize(model, kTokens, 2, 0, text, sizeof text, &n), KTX_STATUS_UNSUPPORTED);
  EXPECT_CODE(ktx_token_to_piece(model, 1, 0, text, sizeof text, &n), KTX_STATUS_UNSUPPORTED);
  EXPECT_CODE(ktx_chat_apply_template(model, &turn, 1, true, text, sizeof text, &n),
              KTX_STATUS_UNSUPPORTED);
  CHECK(n == 55 && tokens[0] == -7 && tokens[3] == -7 && all_bytes(text, sizeof text, 'x'));
}

/* --- sessions -----------------------------------------------------------------------------------
 */

static void test_sessions(const ktx_model* model, const float* golden) {
  ktx_session* const sentinel = (ktx_session*)(uintptr_t)0x5678;
  ktx_session* batch = sentinel;
  ktx_session* steps = NULL;
  float all[kNTokens * kVocab];
  float small[kNTokens * kVocab];
  float last[kVocab];
  const float* logits = NULL;
  const float* before;
  const int32_t* held;
  size_t n = 0, i;
  int32_t bad = kVocab;
  const int32_t ten[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

  EXPECT_CODE(ktx_session_create(model, -1, &batch), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_create(NULL, 16, &batch), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_create(model, 16, NULL), KTX_STATUS_INVALID_ARGUMENT);
  /* A cache whose byte count would wrap 64 bits: refused, not allocated small. */
  EXPECT_CODE(ktx_session_create(model, (int64_t)1 << 59, &batch), KTX_STATUS_OUT_OF_MEMORY);
  CHECK(batch == sentinel);
  EXPECT_OK(ktx_session_create(model, 16, &batch));
  CHECK(ktx_session_position(batch) == 0 && ktx_session_n_ctx(batch) == 16);
  CHECK(ktx_session_get_logits(batch, &n) == NULL && n == 0);

  /* All logits of one prefill, against the NumPy reference (manifest tolerance 2e-3). */
  memset(small, 0xAB, sizeof small);
  EXPECT_CODE(ktx_session_eval_all(batch, kTokens, kNTokens, small, kNTokens * kVocab - 1),
              KTX_STATUS_BUFFER_TOO_SMALL);
  CHECK(all_bytes(small, sizeof small, 0xAB) && ktx_session_position(batch) == 0);
  EXPECT_OK(ktx_session_eval_all(batch, kTokens, kNTokens, all, kNTokens * kVocab));
  CHECK(ktx_session_position(batch) == kNTokens);
  if (golden != NULL) {
    CHECK(max_abs_diff(all, golden, kNTokens * kVocab) < 2e-3f);
  }
  for (i = 0; i < kNTokens; ++i) CHECK(argmax(all + i * kVocab, kVocab) == kArgmax[i]);
  logits = ktx_session_get_logits(batch, &n);
  CHECK(logits != NULL && n == kVocab);
  if (logits != NULL) CHECK(max_abs_diff(logits, all + 6 * kVocab, kVocab) == 0.0f);

  /* Prefill 4, then decode one by one: every step equals the batch's row. */
  EXPECT_OK(ktx_session_create(model, 16, &steps));
  EXPECT_OK(ktx_session_eval(steps, kTokens, 4, &logits));
  CHECK(logits != NULL && max_abs_diff(logits, all + 3 * kVocab, kVocab) < 2e-4f);
  for (i = 4; i < kNTokens; ++i) {
    EXPECT_OK(ktx_session_decode(steps, kTokens[i], &logits));
    CHECK(logits != NULL && max_abs_diff(logits, all + i * kVocab, kVocab) < 2e-4f);
  }
  CHECK(ktx_session_position(steps) == kNTokens);
  held = ktx_session_get_tokens(steps, &n);
  CHECK(held != NULL && n == kNTokens && memcmp(held, kTokens, sizeof kTokens) == 0);
  memcpy(last, logits, sizeof last);

  /* Evaluating nothing succeeds and hands back the current logits. */
  before = logits;
  EXPECT_OK(ktx_session_eval(steps, NULL, 0, &logits));
  CHECK(logits == before);

  /* Refused evaluations leave the session as it was. */
  logits = NULL;
  EXPECT_CODE(ktx_session_eval(steps, &bad, 1, &logits), KTX_STATUS_INVALID_ARGUMENT);
  bad = -1;
  EXPECT_CODE(ktx_session_decode(steps, bad, &logits), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_eval(steps, NULL, 3, &logits), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_eval(NULL, kTokens, 3, &logits), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_eval(steps, ten, 10, &logits),
              KTX_STATUS_INVALID_ARGUMENT); /* 7 + 10 > 16 */
  CHECK(logits == NULL);
  CHECK(ktx_session_position(steps) == kNTokens);
  CHECK(ktx_session_get_logits(steps, NULL) == before);
  if (ktx_session_get_logits(steps, NULL) != NULL) {
    CHECK(max_abs_diff(ktx_session_get_logits(steps, NULL), last, kVocab) == 0.0f);
  }

  /* Rewind keeps the cache before the position and replays exactly. */
  EXPECT_CODE(ktx_session_rewind(steps, kNTokens + 1), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_rewind(steps, -1), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_rewind(NULL, 0), KTX_STATUS_INVALID_ARGUMENT);
  CHECK(ktx_session_position(steps) == kNTokens);
  EXPECT_OK(ktx_session_rewind(steps, 3));
  CHECK(ktx_session_position(steps) == 3);
  CHECK(ktx_session_get_logits(steps, &n) == NULL && n == 0);
  EXPECT_OK(ktx_session_eval(steps, kTokens + 3, kNTokens - 3, &logits));
  CHECK(logits != NULL && max_abs_diff(logits, last, kVocab) < 1e-5f);

  ktx_session_reset(steps);
  CHECK(ktx_session_position(steps) == 0 && ktx_session_get_logits(steps, NULL) == NULL);
  CHECK(ktx_session_get_tokens(steps, &n) == NULL && n == 0);
  EXPECT_OK(ktx_session_eval(steps, kTokens, kNTokens, &logits));
  CHECK(logits != NULL && max_abs_diff(logits, last, kVocab) < 1e-5f);

  /* The context limit. */
  ktx_session_release(steps);
  EXPECT_OK(ktx_session_create(model, 4, &steps));
  EXPECT_CODE(ktx_session_eval(steps, kTokens, 5, &logits), KTX_STATUS_INVALID_ARGUMENT);
  CHECK(ktx_session_position(steps) == 0);
  EXPECT_OK(ktx_session_eval(steps, kTokens, 4, NULL));
  EXPECT_CODE(ktx_session_decode(steps, 1, NULL), KTX_STATUS_INVALID_ARGUMENT);
  CHECK(ktx_session_position(steps) == 4);

  ktx_session_release(steps);
  ktx_session_release(batch);
}

/* Fork, save and load: the copy and the restored session continue exactly as the original. */
static void test_session_state(const ktx_model* model) {
  const char* path = "test_api_golden.session"; /* in the test's working directory */
  ktx_session* original = NULL;
  ktx_session* fork = NULL;
  ktx_session* restored = NULL;
  ktx_session* const sentinel = (ktx_session*)(uintptr_t)0x5678;
  ktx_session* untouched = sentinel;
  const float* logits = NULL;
  float want[kVocab];
  const int32_t next = kTokens[4];
  size_t n = 0;

  EXPECT_OK(ktx_session_create(model, 16, &original));
  EXPECT_OK(ktx_session_eval(original, kTokens, 4, NULL));
  EXPECT_OK(ktx_session_save(original, path));
  EXPECT_OK(ktx_session_fork(original, 0, &fork));
  CHECK(fork != NULL && ktx_session_n_ctx(fork) == 16 && ktx_session_position(fork) == 4);
  EXPECT_OK(ktx_session_create(model, 8, &restored));
  EXPECT_OK(ktx_session_eval(restored, kTokens + 5, 2, NULL));
  EXPECT_OK(ktx_session_load(restored, path));
  CHECK(ktx_session_position(restored) == 4 && ktx_session_n_ctx(restored) == 8);
  CHECK(memcmp(ktx_session_get_tokens(restored, &n), kTokens, 4 * sizeof(int32_t)) == 0 && n == 4);
  CHECK(memcmp(ktx_session_get_logits(restored, NULL), ktx_session_get_logits(original, NULL),
               sizeof want) == 0);

  EXPECT_OK(ktx_session_decode(original, next, &logits));
  memcpy(want, logits, sizeof want);
  EXPECT_OK(ktx_session_decode(fork, next, &logits));
  CHECK(logits != NULL && memcmp(logits, want, sizeof want) == 0);
  EXPECT_OK(ktx_session_decode(restored, next, &logits));
  CHECK(logits != NULL && memcmp(logits, want, sizeof want) == 0);

  /* Refusals: arguments, a context too small for the file or the fork, a model as a session
   * file, the model's own file as the output. The sessions are unchanged. */
  EXPECT_CODE(ktx_session_fork(NULL, 0, &untouched), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_fork(original, 0, NULL), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_fork(original, -1, &untouched), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_fork(original, 4, &untouched), KTX_STATUS_INVALID_ARGUMENT);
  CHECK(untouched == sentinel);
  EXPECT_CODE(ktx_session_save(NULL, path), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_save(original, NULL), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_save(original, ""), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_save(original, g_model_path), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_load(NULL, path), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_load(restored, NULL), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_load(restored, g_model_path), KTX_STATUS_INVALID_FILE);
  EXPECT_CODE(ktx_session_load(restored, "no/such/file.session"), KTX_STATUS_IO_ERROR);
  ktx_session_release(fork);
  EXPECT_OK(ktx_session_create(model, 3, &fork));
  EXPECT_CODE(ktx_session_load(fork, path), KTX_STATUS_INVALID_ARGUMENT); /* 4 tokens > 3 */
  CHECK(ktx_session_position(fork) == 0);
  CHECK(ktx_session_position(restored) == 5);
  remove(path);

  ktx_session_release(fork);
  ktx_session_release(restored);
  ktx_session_release(original);
}

/* One decode step of several sessions at once equals each one's own step. */
static void test_decode_batch(const ktx_model* model) {
  ktx_session* s[3] = {NULL, NULL, NULL};
  ktx_session* alone[3] = {NULL, NULL, NULL};
  ktx_session* twice[2];
  const int32_t next[3] = {7, 12, 40};
  const int32_t bad[3] = {7, kVocab, 40};
  const float* logits = NULL;
  size_t i;
  for (i = 0; i < 3; ++i) {
    EXPECT_OK(ktx_session_create(model, 16, &s[i]));
    EXPECT_OK(ktx_session_eval(s[i], kTokens, i + 2, NULL));
    EXPECT_OK(ktx_session_fork(s[i], 0, &alone[i]));
  }
  EXPECT_OK(ktx_session_decode_batch(s, 3, next));
  for (i = 0; i < 3; ++i) {
    EXPECT_OK(ktx_session_decode(alone[i], next[i], &logits));
    CHECK(ktx_session_position(s[i]) == (int64_t)i + 3);
    CHECK(logits != NULL &&
          max_abs_diff(ktx_session_get_logits(s[i], NULL), logits, kVocab) < 2e-4f);
  }
  /* Refused before anything runs: every session unchanged. */
  EXPECT_CODE(ktx_session_decode_batch(s, 3, bad), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_decode_batch(NULL, 3, next), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_session_decode_batch(s, 3, NULL), KTX_STATUS_INVALID_ARGUMENT);
  twice[0] = s[1];
  twice[1] = s[1];
  EXPECT_CODE(ktx_session_decode_batch(twice, 2, next), KTX_STATUS_INVALID_ARGUMENT);
  twice[1] = NULL;
  EXPECT_CODE(ktx_session_decode_batch(twice, 2, next), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_OK(ktx_session_decode_batch(NULL, 0, NULL)); /* nothing to do */
  for (i = 0; i < 3; ++i) {
    CHECK(ktx_session_position(s[i]) == (int64_t)i + 3);
    ktx_session_release(s[i]);
    ktx_session_release(alone[i]);
  }
}

/* A session keeps its model alive: the model handle may go first. */
static void test_session_outlives_model(const float* golden) {
  ktx_model* model = load_model();
  ktx_session* session = NULL;
  const float* logits = NULL;
  EXPECT_OK(ktx_session_create(model, 8, &session));
  ktx_model_release(model);
  EXPECT_OK(ktx_session_eval(session, kTokens, kNTokens, &logits));
  CHECK(logits != NULL);
  if (logits != NULL && golden != NULL) {
    CHECK(max_abs_diff(logits, golden + 6 * kVocab, kVocab) < 2e-3f);
  }
  ktx_session_release(session);
}

/* --- sampling -----------------------------------------------------------------------------------
 */

static void test_sampling(const ktx_model* model) {
  ktx_sampling_options* options = NULL;
  ktx_sampler* greedy = NULL;
  ktx_sampler* a = NULL;
  ktx_sampler* b = NULL;
  ktx_session* session = NULL;
  ktx_generate_stats stats;
  const float* logits = NULL;
  int32_t token = -9, ta, tb;
  int i, same = 1;

  EXPECT_CODE(ktx_sampling_options_create(NULL), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_OK(ktx_sampling_options_create(&options));
  EXPECT_CODE(ktx_sampling_options_set_top_p(options, 0.0f), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_sampling_options_set_top_p(options, 1.5f), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_sampling_options_set_min_p(options, -0.1f), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_sampling_options_set_temperature(options, (float)NAN),
              KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_sampling_options_set_repeat_penalty(options, 0.0f), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_sampling_options_set_penalty_last_n(options, -1), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_sampling_options_set_presence_penalty(options, (float)INFINITY),
              KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_sampling_options_set_frequency_penalty(NULL, 0.0f), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_OK(ktx_sampling_options_set_top_k(options, 0));
  EXPECT_OK(ktx_sampling_options_set_top_p(options, 1.0f));
  EXPECT_OK(ktx_sampling_options_set_min_p(options, 0.0f));
  EXPECT_OK(ktx_sampling_options_set_repeat_penalty(options, 1.0f));
  EXPECT_OK(ktx_sampling_options_set_presence_penalty(options, 0.0f));
  EXPECT_OK(ktx_sampling_options_set_frequency_penalty(options, 0.0f));
  EXPECT_OK(ktx_sampling_options_set_penalty_last_n(options, 64));

  EXPECT_OK(ktx_session_create(model, 16, &session));
  EXPECT_OK(ktx_session_eval(session, kTokens, kNTokens, &logits));

  /* Greedy picks the arg max. */
  EXPECT_OK(ktx_sampling_options_set_temperature(options, 0.0f));
  EXPECT_OK(ktx_sampler_create(options, &greedy));
  EXPECT_OK(ktx_sampler_sample(greedy, logits, kVocab, &token));
  CHECK(token == kArgmax[6]);
  token = -9;
  EXPECT_CODE(ktx_sampler_sample(greedy, logits, 0, &token), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_sampler_sample(greedy, NULL, kVocab, &token), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_sampler_sample(greedy, logits, kVocab, NULL), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_sampler_sample(NULL, logits, kVocab, &token), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_sampler_accept(greedy, -1), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_sampler_create(options, NULL), KTX_STATUS_INVALID_ARGUMENT);
  CHECK(token == -9);
  EXPECT_OK(ktx_sampler_accept(greedy, 3));
  ktx_sampler_reset(greedy);

  /* The same seed draws the same tokens; the options were copied at creation. */
  EXPECT_OK(ktx_sampling_options_set_temperature(options, 1.5f));
  EXPECT_OK(ktx_sampling_options_set_seed(options, 42));
  EXPECT_OK(ktx_sampler_create(options, &a));
  EXPECT_OK(ktx_sampler_create(options, &b));
  ktx_sampling_options_release(options);
  for (i = 0; i < 32; ++i) {
    EXPECT_OK(ktx_sampler_sample(a, logits, kVocab, &ta));
    EXPECT_OK(ktx_sampler_sample(b, logits, kVocab, &tb));
    CHECK(ta >= 0 && ta < kVocab);
    if (ta != tb) same = 0;
  }
  CHECK(same);
  ktx_sampler_release(a);
  ktx_sampler_release(b);
  EXPECT_OK(ktx_sampler_create(NULL, &a)); /* the defaults */
  ktx_sampler_release(a);

  /* Generation needs a tokenizer (end-of-generation tokens): refused, nothing changed. */
  memset(&stats, 0xAB, sizeof stats);
  stats.struct_size = sizeof stats;
  EXPECT_CODE(ktx_generate(session, greedy, kTokens, 2, 4, NULL, NULL, &stats),
              KTX_STATUS_UNSUPPORTED);
  EXPECT_CODE(ktx_generate(session, greedy, kTokens, 2, -1, NULL, NULL, &stats),
              KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_generate(NULL, greedy, kTokens, 2, 4, NULL, NULL, &stats),
              KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_generate(session, NULL, kTokens, 2, 4, NULL, NULL, &stats),
              KTX_STATUS_INVALID_ARGUMENT);
  CHECK(ktx_session_position(session) == kNTokens);
  CHECK(all_bytes((char*)&stats + sizeof(size_t), sizeof stats - sizeof(size_t), 0xAB));

  ktx_sampler_release(greedy);
  ktx_session_release(session);
}

int main(int argc, char** argv) {
  ktx_model* model;
  float* golden;
  char npy[4200];
  if (argc != 3) {
    fprintf(stderr, "usage: %s GOLDEN_DIR RULES_DIR\n", argv[0]);
    return 2;
  }
  snprintf(g_golden_dir, sizeof g_golden_dir, "%s", argv[1]);
  snprintf(g_rules_dir, sizeof g_rules_dir, "%s", argv[2]);
  snprintf(g_model_path, sizeof g_model_path, "%s/ds2_lite.gguf", g_golden_dir);
  snprintf(npy, sizeof npy, "%s/ds2_lite.logits.npy", g_golden_dir);
  golden = read_npy(npy, kNTokens * kVocab);
  CHECK(golden != NULL);

  test_versions_and_status();
  test_null_handles();
  test_options_and_load_errors();
  model = load_model();
  test_info(model);
  test_metadata(model);
  test_plan(model);
  test_rules();
  test_backends(model);
  test_no_tokenizer(model);
  test_sessions(model, golden);
  test_session_state(model);
  test_decode_batch(model);
  test_session_outlives_model(golden);
  test_sampling(model);
  ktx_model_release(model);
  free(golden);
  return finish("test_api_golden");
}
