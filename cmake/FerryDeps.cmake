# Finds ferry's dependencies. With FERRY_STATIC_DEPS the archive (.a) of each
# is preferred, so a binary built here runs on a host that lacks the packages
# (the GPU machines have no package manager; see docs/OPERATIONS.md).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)

function(ferry_find_lib var name header)
  if(FERRY_STATIC_DEPS)
    find_library(${var}_LIB NAMES lib${name}.a ${name} REQUIRED)
  else()
    find_library(${var}_LIB NAMES ${name} REQUIRED)
  endif()
  find_path(${var}_INCLUDE ${header} REQUIRED)
  add_library(ferry::${name} INTERFACE IMPORTED GLOBAL)
  target_link_libraries(ferry::${name} INTERFACE ${${var}_LIB})
  target_include_directories(ferry::${name} INTERFACE ${${var}_INCLUDE})
endfunction()

ferry_find_lib(URING uring liburing.h)
ferry_find_lib(ZSTD zstd zstd.h)
ferry_find_lib(GFLAGS gflags gflags/gflags.h)

if(FERRY_STATIC_DEPS)
  set(OPENSSL_USE_STATIC_LIBS TRUE)
  add_link_options(-static-libstdc++ -static-libgcc)
endif()
find_package(OpenSSL 3 REQUIRED)
target_link_libraries(ferry::gflags INTERFACE Threads::Threads)
find_package(nlohmann_json 3 REQUIRED)
# CLI11 (header-only) defines the `ferry` command's flags (tools/).
find_package(CLI11 2 REQUIRED)
# libcurl (Debian: libcurl4-openssl-dev) is the S3 client's HTTP, TLS and
# SigV4 signer (store/s3_client.h); 7.75 brought CURLOPT_AWS_SIGV4.
find_package(CURL 7.75 REQUIRED)

# cpp-httplib serves the agent's Prometheus /metrics endpoint. Debian ships it
# split: httplib.h declares, libcpp-httplib.so implements, and its class
# layout depends on the feature macros in cpp-httplib.pc, so they are taken
# from pkg-config. There is no static archive, so a FERRY_STATIC_DEPS build
# leaves the endpoint out (ferry-agent then refuses --metrics_listen with a
# message saying so) unless libcpp-httplib.a is found.
add_library(ferry::httplib INTERFACE IMPORTED GLOBAL)
pkg_check_modules(HTTPLIB cpp-httplib)
if(HTTPLIB_FOUND AND FERRY_STATIC_DEPS)
  find_library(HTTPLIB_STATIC_LIB NAMES libcpp-httplib.a)
  if(HTTPLIB_STATIC_LIB)
    pkg_check_modules(HTTPLIB_ZLIB REQUIRED zlib)
    target_link_libraries(ferry::httplib INTERFACE ${HTTPLIB_STATIC_LIB} OpenSSL::SSL
                          ${HTTPLIB_ZLIB_STATIC_LIBRARIES} brotlienc brotlidec brotlicommon)
  else()
    message(STATUS "cpp-httplib has no static archive here: the agent's /metrics endpoint is left out of this static build")
    set(HTTPLIB_FOUND FALSE)
  endif()
elseif(HTTPLIB_FOUND)
  find_library(HTTPLIB_SHARED_LIB NAMES cpp-httplib HINTS ${HTTPLIB_LIBRARY_DIRS} REQUIRED)
  target_link_libraries(ferry::httplib INTERFACE ${HTTPLIB_SHARED_LIB} Threads::Threads)
elseif(NOT FERRY_STATIC_DEPS)
  message(FATAL_ERROR "cpp-httplib not found (Debian: apt install libcpp-httplib-dev); it serves the agent's /metrics")
endif()
if(HTTPLIB_FOUND)
  target_compile_options(ferry::httplib INTERFACE ${HTTPLIB_CFLAGS_OTHER})
  target_include_directories(ferry::httplib INTERFACE ${HTTPLIB_INCLUDE_DIRS})
  target_compile_definitions(ferry::httplib INTERFACE FERRY_HAVE_HTTPLIB=1)
endif()
