/* A complete C host: load a model (with a progress bar), render the prompt with the model's chat
 * template when it has one, tokenize, and generate with the text streamed as it comes.
 *
 * usage: simple MODEL.gguf ["prompt"] [n_predict] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ktx/ktx.h"

/* Prints a failed call's code and message, frees the status, and says whether it failed. */
static int failed(ktx_status* status, const char* what) {
  if (status == NULL) return 0;
  fprintf(stderr, "%s: %s: %s\n", what, ktx_status_code_name(ktx_status_get_code(status)),
          ktx_status_get_message(status));
  ktx_status_release(status);
  return 1;
}

static bool on_progress(float progress, void* user_data) {
  (void)user_data;
  fprintf(stderr, "\rloading %3d%%", (int)(progress * 100.0f + 0.5f));
  if (progress >= 1.0f) fputc('\n', stderr);
  return true; /* false would cancel the load */
}

static bool on_token(int32_t token, const char* piece, size_t len, void* user_data) {
  (void)token;
  (void)user_data;
  fwrite(piece, 1, len, stdout);
  fflush(stdout);
  return true; /* false would stop generating */
}

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : NULL;
  const char* prompt = argc > 2 ? argv[2] : "Write one sentence about the sea.";
  const long n_predict = argc > 3 ? strtol(argv[3], NULL, 10) : 64;
  const uint32_t abi = ktx_abi_version();
  ktx_model_options* options = NULL;
  ktx_model* model = NULL;
  ktx_session* session = NULL;
  ktx_sampler* sampler = NULL;
  ktx_generate_stats stats;
  char* text = NULL;
  int32_t* tokens = NULL;
  size_t text_len = 0, n_tokens = 0;
  uint32_t flags = KTX_TOKENIZE_ADD_SPECIAL;
  int rc = 1;

  if (path == NULL) {
    fprintf(stderr, "usage: %s MODEL.gguf [\"prompt\"] [n_predict]\n", argv[0]);
    return 2;
  }
  if ((abi >> 16) != KTX_ABI_VERSION_MAJOR || (abi & 0xffffu) < KTX_ABI_VERSION_MINOR) {
    fprintf(stderr, "libktx speaks ABI %u.%u, this program needs %d.%d\n", (unsigned)(abi >> 16),
            (unsigned)(abi & 0xffffu), KTX_ABI_VERSION_MAJOR, KTX_ABI_VERSION_MINOR);
    return 1;
  }

  if (failed(ktx_model_options_create(&options), "options") ||
      failed(ktx_model_options_set_progress_callback(options, on_progress, NULL), "options") ||
      failed(ktx_model_load(path, options, &model), "load")) {
    goto done;
  }

  /* A chat model gets its template (which writes the special tokens itself). */
  {
    ktx_chat_message turn;
    ktx_status* st;
    turn.role = "user";
    turn.content = prompt;
    st = ktx_chat_apply_template(model, &turn, 1, true, NULL, 0, &text_len);
    if (st == NULL) {
      text = malloc(text_len + 1);
      if (text == NULL ||
          failed(ktx_chat_apply_template(model, &turn, 1, true, text, text_len + 1, &text_len),
                 "chat template")) {
        goto done;
      }
      flags = KTX_TOKENIZE_PARSE_SPECIAL;
    } else {
      ktx_status_release(st); /* no template: the prompt as it is */
      text_len = strlen(prompt);
      text = malloc(text_len + 1);
      if (text == NULL) goto done;
      memcpy(text, prompt, text_len + 1);
    }
  }

  /* The buffer protocol: ask for the size, then fill. */
  if (failed(ktx_tokenize(model, text, text_len, flags, NULL, 0, &n_tokens), "tokenize")) {
    goto done;
  }
  tokens = malloc((n_tokens > 0 ? n_tokens : 1) * sizeof *tokens);
  if (tokens == NULL ||
      failed(ktx_tokenize(model, text, text_len, flags, tokens, n_tokens, &n_tokens), "tokenize")) {
    goto done;
  }

  if (failed(ktx_session_create(model, 0, &session), "session") ||
      failed(ktx_sampler_create(NULL, &sampler), "sampler")) {
    goto done;
  }
  stats.struct_size = sizeof stats;
  if (failed(ktx_generate(session, sampler, tokens, n_tokens, n_predict, on_token, NULL, &stats),
             "generate")) {
    goto done;
  }
  fprintf(stderr, "\n%lld prompt tokens, %lld generated in %.2f s (%.1f tok/s)%s\n",
          (long long)stats.n_prompt, (long long)stats.n_generated, stats.decode_seconds,
          stats.decode_seconds > 0 ? (double)stats.n_generated / stats.decode_seconds : 0.0,
          stats.stop_reason == KTX_STOP_EOG ? ", stopped at end of generation" : "");
  rc = 0;

done:
  free(tokens);
  free(text);
  ktx_sampler_release(sampler); /* every release accepts NULL */
  ktx_session_release(session);
  ktx_model_release(model);
  ktx_model_options_release(options);
  return rc;
}
