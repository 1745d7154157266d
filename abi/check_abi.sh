#!/usr/bin/env bash
# Compares the built C ABI with the committed baseline (abi/README.md explains the rules):
#   - libktx.so exports exactly the KTX_API functions ktx.h declares, all named ktx_*;
#   - exports and layouts (structs, enums, flag macros) equal abi/baseline/<MAJOR.MINOR>/ for the
#     header's KTX_ABI_VERSION, so any change to the ABI needs a version bump and a new baseline;
#   - every older baseline of the same major is still honoured: no export removed, no field or
#     value moved, no frozen struct resized, growable structs only grown.
#
# usage: abi/check_abi.sh [--update] LIBKTX.so LAYOUT_PROGRAM
#   LAYOUT_PROGRAM: the program abi/extract_api.py layouts-c generates (ctest builds it as
#   ktx_abi_layouts). --update writes the current exports and layouts as the baseline of the
#   header's version, after a deliberate bump.
set -euo pipefail

update=0
if [[ "${1:-}" == "--update" ]]; then
  update=1
  shift
fi
if [[ $# -ne 2 ]]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
lib=$1
layout_program=$2
here=$(cd "$(dirname "$0")" && pwd)
header="$here/../include/ktx/ktx.h"
python=${PYTHON:-python3}

major=$(sed -n 's/^#define KTX_ABI_VERSION_MAJOR \([0-9]*\)$/\1/p' "$header")
minor=$(sed -n 's/^#define KTX_ABI_VERSION_MINOR \([0-9]*\)$/\1/p' "$header")
[[ -n "$major" && -n "$minor" ]] || { echo "check_abi: no KTX_ABI_VERSION in $header" >&2; exit 2; }
version="$major.$minor"
baseline="$here/baseline/$version"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
nm -D --defined-only "$lib" | awk '{print $NF}' | sed 's/@.*//' | LC_ALL=C sort -u >"$work/symbols.txt"
"$layout_program" >"$work/layouts.txt"
"$python" "$here/extract_api.py" functions --header "$header" | LC_ALL=C sort >"$work/declared.txt"

failed=0
fail() {
  echo "ABI CHECK FAILED: $*" >&2
  failed=1
}

# 1. What is exported is exactly what is declared.
if grep -v '^ktx_' "$work/symbols.txt" >"$work/foreign.txt"; then
  fail "$lib exports symbols outside the ktx_ namespace (check abi/ktx.map):"
  sed 's/^/    /' "$work/foreign.txt" >&2
fi
if ! diff -u --label declared-in-ktx.h --label exported-by-libktx "$work/declared.txt" \
    "$work/symbols.txt" >"$work/decl.diff"; then
  fail "declared (-) and exported (+) functions differ:"
  sed 's/^/    /' "$work/decl.diff" >&2
fi

if [[ $update -eq 1 ]]; then
  if [[ $failed -ne 0 ]]; then
    echo "check_abi: not updating the baseline while the library and the header disagree" >&2
    exit 1
  fi
  mkdir -p "$baseline"
  cp "$work/symbols.txt" "$baseline/symbols.txt"
  cp "$work/layouts.txt" "$baseline/layouts.txt"
  echo "check_abi: wrote the ABI $version baseline to $baseline"
fi

# 2. The baseline of this version matches exactly.
if [[ ! -d "$baseline" ]]; then
  fail "no baseline for ABI $version (abi/baseline/$version/). If you bumped KTX_ABI_VERSION on
    purpose, record the new ABI with: abi/check_abi.sh --update $lib $layout_program"
else
  for what in symbols layouts; do
    if ! diff -u --label "baseline/$version/$what.txt" --label "this build" \
        "$baseline/$what.txt" "$work/$what.txt" >"$work/$what.diff"; then
      fail "the $what differ from the committed ABI $version baseline (- baseline, + build):"
      sed 's/^/    /' "$work/$what.diff" >&2
      echo "    Adding functions, fields or values is allowed with a minor bump: raise" >&2
      echo "    KTX_ABI_VERSION_MINOR in ktx.h, then run abi/check_abi.sh --update LIB PROGRAM." >&2
      echo "    Removing or moving anything breaks hosts: it needs a major bump (abi/README.md)." >&2
    fi
  done
fi

# 3. Every older baseline of this major is still honoured.
for old in "$here"/baseline/"$major".*; do
  [[ -d "$old" ]] || continue
  old_version=$(basename "$old")
  old_minor=${old_version#*.}
  [[ "$old_minor" -lt "$minor" ]] || continue
  if ! LC_ALL=C comm -23 <(LC_ALL=C sort "$old/symbols.txt") "$work/symbols.txt" >"$work/gone.txt"; then
    fail "cannot compare with baseline $old_version"
  elif [[ -s "$work/gone.txt" ]]; then
    fail "functions of ABI $old_version are no longer exported (a major bump is needed):"
    sed 's/^/    /' "$work/gone.txt" >&2
  fi
  # Fields, enum values and macros must be unchanged; frozen structs the same size; growable
  # structs at least as large, with the same alignment.
  awk -v old_version="$old_version" '
    NR == FNR { now[$0] = 1; if ($1 == "struct") struct[$2] = $0; next }
    $1 == "field" || $1 == "value" || $1 == "enum" || $1 == "macro" {
      if (!($0 in now)) { print "    changed or removed since " old_version ": " $0; bad = 1 }
      next
    }
    $1 == "struct" {
      if (!($2 in struct)) { print "    struct removed since " old_version ": " $2; bad = 1; next }
      split(struct[$2], cur, " ")
      if ($7 == "frozen" && struct[$2] != $0) {
        print "    frozen struct changed since " old_version ": " $0 " -> " struct[$2]; bad = 1
      } else if (cur[4] + 0 < $4 + 0 || cur[6] != $6 || cur[7] != $7) {
        print "    struct shrank or changed kind since " old_version ": " $0 " -> " struct[$2]; bad = 1
      }
    }
    END { exit bad }' "$work/layouts.txt" "$old/layouts.txt" >"$work/old.txt" || {
    fail "layouts of ABI $old_version are not honoured (a major bump is needed):"
    cat "$work/old.txt" >&2
  }
done

if [[ $failed -ne 0 ]]; then
  exit 1
fi
echo "check_abi: ABI $version OK ($(wc -l <"$work/symbols.txt") functions; older baselines honoured)"
