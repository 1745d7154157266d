# ktx_find_dnnl(): find_package(dnnl) that cannot stop the configure. Debian's dnnl-config.cmake
# asks for OpenCL with REQUIRED (oneDNN's GPU runtime), which is a hard error, QUIET or not, when
# the OpenCL headers (ocl-icd-opencl-dev, which libdnnl-dev only "recommends") are missing. Looking
# for OpenCL first lets the callers go on without oneDNN instead; dnnl_FOUND says which.
macro(ktx_find_dnnl)
  find_package(OpenCL QUIET)
  if(OpenCL_FOUND)
    find_package(dnnl CONFIG QUIET)
  else()
    set(dnnl_FOUND FALSE)
  endif()
endmacro()
