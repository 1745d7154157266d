# All warnings on for ktx's own targets; errors in CI (KTX_WERROR=ON).
function(ktx_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX,C>:-Wall -Wextra -Wpedantic -Wshadow -Wcast-align -Wundef>
    $<$<COMPILE_LANGUAGE:CXX>:-Wconversion-null -Wnon-virtual-dtor>
    $<$<AND:$<COMPILE_LANGUAGE:CXX,C>,$<BOOL:${KTX_WERROR}>>:-Werror>
    $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${KTX_WERROR}>>:-Werror=all-warnings>)
endfunction()
