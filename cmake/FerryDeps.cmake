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
