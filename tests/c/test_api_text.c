/* The C API's text side over the default model (SmolLM2-135M-Instruct, byte-level BPE with a
 * ChatML template): tokenize / detokenize / pieces with the buffer protocol, special tokens, the
 * chat template, and generation with a streaming callback — greedy reproducibility, cancel, and
 * the streamed text against the detokenized tokens. Compiled as C99 against ktx.h alone.
 *
 * usage: test_api_text MODEL.gguf   (an empty MODEL: exit 77, "skipped: no default model") */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ktx/ktx.h"

enum { kMaxTokens = 256, kMaxText = 4096 };

static void test_tokenizer(const ktx_model* model) {
  static const char kText[] = "Hello world, ktx speaks UTF-8: caf\xc3\xa9 \xe2\x9c\x93";
  const size_t text_len = sizeof kText - 1;
  int32_t tokens[kMaxTokens];
  int32_t few[2] = {-7, -7};
  char text[kMaxText];
  char pieces[kMaxText];
  char small[4];
  size_t n = 0, needed = 0, len = 0, total = 0, i;

  CHECK(ktx_model_has_tokenizer(model));

  /* Size query, too small (only the count written), then filled. */
  EXPECT_OK(ktx_tokenize(model, kText, text_len, 0, NULL, 0, &needed));
  CHECK(needed > 2 && needed < kMaxTokens);
  n = 0;
  EXPECT_CODE(ktx_tokenize(model, kText, text_len, 0, few, 2, &n), KTX_STATUS_BUFFER_TOO_SMALL);
  CHECK(n == needed && few[0] == -7 && few[1] == -7);
  EXPECT_CODE(ktx_tokenize(model, kText, text_len, 0, NULL, 5, &n), KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_tokenize(model, kText, text_len, 0, tokens, kMaxTokens, NULL),
              KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_OK(ktx_tokenize(model, kText, text_len, 0, tokens, kMaxTokens, &n));
  CHECK(n == needed);
  EXPECT_OK(ktx_tokenize(model, "", 0, 0, tokens + n, kMaxTokens - n, &len));
  CHECK(len == 0);

  /* Byte-level BPE gives the text back exactly, through the buffer protocol. */
  EXPECT_OK(ktx_detokenize(model, tokens, n, 0, NULL, 0, &len));
  CHECK(len == text_len);
  memset(text, 'x', sizeof text);
  EXPECT_CODE(ktx_detokenize(model, tokens, n, 0, text, text_len, &len),
              KTX_STATUS_BUFFER_TOO_SMALL); /* no room for the NUL */
  CHECK(len == text_len && all_bytes(text, sizeof text, 'x'));
  EXPECT_OK(ktx_detokenize(model, tokens, n, 0, text, text_len + 1, &len));
  CHECK(len == text_len && memcmp(text, kText, text_len) == 0 && text[len] == '\0');
  EXPECT_CODE(ktx_detokenize(model, tokens, n, 0x10u, text, sizeof text, &len),
              KTX_STATUS_INVALID_ARGUMENT);

  /* Pieces concatenate to the text. */
  for (i = 0; i < n; ++i) {
    EXPECT_OK(ktx_token_to_piece(model, tokens[i], 0, pieces + total, sizeof pieces - total, &len));
    total += len;
  }
  CHECK(total == text_len && memcmp(pieces, kText, text_len) == 0);
  len = 99;
  EXPECT_CODE(ktx_token_to_piece(model, -1, 0, small, sizeof small, &len),
              KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_token_to_piece(model, 1 << 30, 0, small, sizeof small, &len),
              KTX_STATUS_INVALID_ARGUMENT);
  CHECK(len == 99);
  {
    const int32_t bad = -3;
    EXPECT_CODE(ktx_detokenize(model, &bad, 1, 0, text, sizeof text, &len),
                KTX_STATUS_INVALID_ARGUMENT);
  }

  /* Special tokens: "<|im_end|>" is one control token with parse_special, text without. */
  EXPECT_OK(
      ktx_tokenize(model, "<|im_end|>", 10, KTX_TOKENIZE_PARSE_SPECIAL, tokens, kMaxTokens, &n));
  CHECK(n == 1);
  if (n == 1) {
    CHECK(ktx_token_is_eog(model, tokens[0]));
    EXPECT_OK(ktx_token_to_piece(model, tokens[0], KTX_DETOKENIZE_RENDER_SPECIAL, text, sizeof text,
                                 &len));
    CHECK(len == 10 && strcmp(text, "<|im_end|>") == 0);
    EXPECT_OK(ktx_token_to_piece(model, tokens[0], 0, text, sizeof text, &len));
    CHECK(len == 0 && text[0] == '\0');
  }
  EXPECT_OK(ktx_tokenize(model, "<|im_end|>", 10, 0, tokens, kMaxTokens, &n));
  CHECK(n > 1);
  CHECK(ktx_token_eos(model) >= 0 && ktx_token_is_eog(model, ktx_token_eos(model)));
  CHECK(!ktx_token_is_eog(model, -1));
}

static void test_chat_template(const ktx_model* model, char* out, size_t* out_len) {
  ktx_chat_message turns[2];
  char small[8];
  size_t len = 0, needed = 0;
  turns[0].role = "system";
  turns[0].content = "You are terse.";
  turns[1].role = "user";
  turns[1].content = "What is the capital of France?";

  EXPECT_OK(ktx_chat_apply_template(model, turns, 2, true, NULL, 0, &needed));
  CHECK(needed > 40 && needed < kMaxText);
  memset(small, 'x', sizeof small);
  EXPECT_CODE(ktx_chat_apply_template(model, turns, 2, true, small, sizeof small, &len),
              KTX_STATUS_BUFFER_TOO_SMALL);
  CHECK(len == needed && all_bytes(small, sizeof small, 'x'));
  EXPECT_OK(ktx_chat_apply_template(model, turns, 2, true, out, kMaxText, &len));
  CHECK(len == needed);
  CHECK(strstr(out, "<|im_start|>system\nYou are terse.<|im_end|>\n") == out);
  CHECK(len > 22 && strcmp(out + len - 22, "<|im_start|>assistant\n") == 0);
  *out_len = len;

  turns[1].content = NULL;
  EXPECT_CODE(ktx_chat_apply_template(model, turns, 2, true, small, sizeof small, &len),
              KTX_STATUS_INVALID_ARGUMENT);
  EXPECT_CODE(ktx_chat_apply_template(model, NULL, 2, true, small, sizeof small, &len),
              KTX_STATUS_INVALID_ARGUMENT);
}

typedef struct Stream {
  int32_t tokens[kMaxTokens];
  size_t n_tokens;
  char text[kMaxText];
  size_t text_len;
  int calls;
  int stop_after; /* return false on this call; 0: never */
  int bad_nul;    /* a piece that was not NUL-terminated */
} Stream;

static bool on_token(int32_t token, const char* piece, size_t piece_len, void* user_data) {
  Stream* s = (Stream*)user_data;
  ++s->calls;
  if (piece[piece_len] != '\0') s->bad_nul = 1;
  if (token >= 0 && s->n_tokens < kMaxTokens) s->tokens[s->n_tokens++] = token;
  if (s->text_len + piece_len < kMaxText) {
    memcpy(s->text + s->text_len, piece, piece_len);
    s->text_len += piece_len;
    s->text[s->text_len] = '\0';
  }
  return s->stop_after == 0 || s->calls < s->stop_after;
}

/* Greedy generation of a chat answer; returns the stats. */
static ktx_generate_stats generate(const ktx_model* model, const int32_t* prompt, size_t n_prompt,
                                   int64_t n_predict, Stream* stream) {
  ktx_sampling_options* options = NULL;
  ktx_sampler* sampler = NULL;
  ktx_session* session = NULL;
  ktx_generate_stats stats;
  memset(&stats, 0, sizeof stats);
  stats.struct_size = sizeof stats;
  EXPECT_OK(ktx_sampling_options_create(&options));
  EXPECT_OK(ktx_sampling_options_set_temperature(options, 0.0f));
  EXPECT_OK(ktx_sampler_create(options, &sampler));
  ktx_sampling_options_release(options);
  EXPECT_OK(ktx_session_create(model, 256, &session));
  EXPECT_OK(ktx_generate(session, sampler, prompt, n_prompt, n_predict, on_token, stream, &stats));
  /* The session holds the prompt and the generated tokens, but for the last one when n_predict
   * or the callback ended it (sampled, never evaluated). */
  if (stats.n_generated > 0) {
    const int64_t unevaluated =
        stats.stop_reason == KTX_STOP_LENGTH || stats.stop_reason == KTX_STOP_CANCELLED;
    CHECK(ktx_session_position(session) == (int64_t)n_prompt + stats.n_generated - unevaluated);
  }
  ktx_session_release(session);
  ktx_sampler_release(sampler);
  return stats;
}

static void test_generate(const ktx_model* model, const char* chat, size_t chat_len) {
  int32_t prompt[kMaxTokens];
  size_t n_prompt = 0, len = 0;
  char decoded[kMaxText];
  Stream first, again, cancelled;
  ktx_generate_stats stats;
  ktx_session* session = NULL;
  ktx_sampler* sampler = NULL;

  /* The template wrote the special tokens: parse them, add nothing. */
  EXPECT_OK(ktx_tokenize(model, chat, chat_len, KTX_TOKENIZE_PARSE_SPECIAL, prompt, kMaxTokens,
                         &n_prompt));

  memset(&first, 0, sizeof first);
  stats = generate(model, prompt, n_prompt, 16, &first);
  CHECK(stats.n_prompt == (int64_t)n_prompt);
  CHECK(stats.n_generated >= 1 && stats.n_generated <= 16);
  CHECK(stats.stop_reason == KTX_STOP_LENGTH || stats.stop_reason == KTX_STOP_EOG);
  CHECK(stats.stop_reason != KTX_STOP_LENGTH || stats.n_generated == 16);
  CHECK(stats.prefill_seconds >= 0.0 && stats.decode_seconds >= 0.0);
  CHECK(first.n_tokens == (size_t)stats.n_generated && !first.bad_nul);
  CHECK(strstr(first.text, "Paris") != NULL);
  /* What was streamed is exactly the generated tokens' text. */
  EXPECT_OK(ktx_detokenize(model, first.tokens, first.n_tokens, 0, decoded, sizeof decoded, &len));
  CHECK(len == first.text_len && memcmp(decoded, first.text, len) == 0);
  printf("generated: %s\n", first.text);

  /* Greedy is reproducible. */
  memset(&again, 0, sizeof again);
  generate(model, prompt, n_prompt, 16, &again);
  CHECK(again.text_len == first.text_len && strcmp(again.text, first.text) == 0);

  /* The callback stops it: success, KTX_STOP_CANCELLED, no call after the refusal. */
  memset(&cancelled, 0, sizeof cancelled);
  cancelled.stop_after = 3;
  stats = generate(model, prompt, n_prompt, 16, &cancelled);
  CHECK(stats.stop_reason == KTX_STOP_CANCELLED && stats.n_generated == 3);
  CHECK(cancelled.calls == 3);

  /* The context ends it. */
  memset(&cancelled, 0, sizeof cancelled);
  EXPECT_OK(ktx_session_create(model, (int64_t)n_prompt + 2, &session));
  EXPECT_OK(ktx_sampler_create(NULL, &sampler));
  memset(&stats, 0, sizeof stats);
  stats.struct_size = sizeof stats;
  EXPECT_OK(ktx_generate(session, sampler, prompt, n_prompt, 50, NULL, NULL, &stats));
  CHECK(stats.stop_reason == KTX_STOP_CONTEXT_FULL || stats.stop_reason == KTX_STOP_EOG);

  /* Refusals leave the session and stats alone. */
  ktx_session_reset(session);
  memset(&stats, 0xAB, sizeof stats);
  stats.struct_size = 8;
  EXPECT_CODE(ktx_generate(session, sampler, prompt, n_prompt, 4, NULL, NULL, &stats),
              KTX_STATUS_INVALID_ARGUMENT);
  CHECK(stats.struct_size == 8 && all_bytes((char*)&stats + 8, sizeof stats - 8, 0xAB));
  stats.struct_size = sizeof stats;
  EXPECT_CODE(ktx_generate(session, sampler, NULL, 0, 4, NULL, NULL, &stats),
              KTX_STATUS_INVALID_ARGUMENT); /* nothing to generate from */
  EXPECT_CODE(ktx_generate(session, sampler, prompt, n_prompt + 3, 4, NULL, NULL, &stats),
              KTX_STATUS_INVALID_ARGUMENT); /* the prompt overflows the context */
  CHECK(ktx_session_position(session) == 0);
  CHECK(all_bytes((char*)&stats + 8, sizeof stats - 8, 0xAB));
  ktx_sampler_release(sampler);
  ktx_session_release(session);
}

int main(int argc, char** argv) {
  ktx_model_options* options = NULL;
  ktx_model* model = NULL;
  ktx_model_info info;
  char chat[kMaxText];
  size_t chat_len = 0;
  if (argc != 2) {
    fprintf(stderr, "usage: %s MODEL.gguf\n", argv[0]);
    return 2;
  }
  if (argv[1][0] == '\0') {
    printf("skipped: no default model (scripts/default_model.py found none)\n");
    return 77;
  }
  EXPECT_OK(ktx_model_options_create(&options));
  EXPECT_OK(ktx_model_options_set_threads(options, 2));
  EXPECT_OK(ktx_model_load(argv[1], options, &model));
  ktx_model_options_release(options);
  if (model == NULL) return finish("test_api_text");
  info.struct_size = sizeof info;
  EXPECT_OK(ktx_model_get_info(model, &info));
  CHECK(strcmp(info.architecture, "llama") == 0 && info.n_vocab > 1000);

  test_tokenizer(model);
  test_chat_template(model, chat, &chat_len);
  test_generate(model, chat, chat_len);
  ktx_model_release(model);
  return finish("test_api_text");
}
