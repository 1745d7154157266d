# -DKTX_SANITIZE="address;undefined" (or "thread") instruments every target of the build.
if(KTX_SANITIZE)
  string(REPLACE ";" "," _ktx_sanitizers "${KTX_SANITIZE}")
  add_compile_options(-fsanitize=${_ktx_sanitizers} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${_ktx_sanitizers})
endif()
