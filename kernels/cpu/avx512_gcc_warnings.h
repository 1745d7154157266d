// Included by every *_avx512*.cpp after its system headers: GCC 12's AVX-512 headers build
// "undefined" vectors as `__m512i __Y = __Y;`, which its own -Wuninitialized and
// -Wmaybe-uninitialized then report wherever a cast or reduction is inlined (GCC PR 105593).
// Diagnostic pragmas hold for the rest of the including file, which is the point.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
