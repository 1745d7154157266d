# ktx_add_backend_module(TARGET NAME SOURCES... [OUTPUT_DIRECTORY DIR]): a backend module
# libktx-backend-NAME.so. It links ktx's core statically, exports only ktx_backend_init and
# ktx_backend_score (module.map) and is written to DIR (default: <build>/backends, the folder
# ktx searches next to its tools and tests). docs/BACKENDS.md explains why.
function(ktx_add_backend_module target name)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY" "" ${ARGN})
  if(NOT ARG_OUTPUT_DIRECTORY)
    set(ARG_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/backends)
  endif()
  add_library(${target} MODULE ${ARG_UNPARSED_ARGUMENTS})
  set_target_properties(${target} PROPERTIES
    PREFIX "lib" OUTPUT_NAME "ktx-backend-${name}"
    LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY}
    CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS ${KTX_BACKEND_MODULE_MAP})
  target_link_libraries(${target} PRIVATE ktx_internal)
  target_link_options(${target} PRIVATE -Wl,--version-script=${KTX_BACKEND_MODULE_MAP}
                                        -Wl,--no-undefined)
  ktx_warnings(${target})
endfunction()
set(KTX_BACKEND_MODULE_MAP ${CMAKE_CURRENT_LIST_DIR}/module.map)
