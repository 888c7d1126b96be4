# SPDX-License-Identifier: Apache-2.0
# VERDICT_CUDA=AUTO|ON|OFF. AUTO enables CUDA when a toolkit is found (a GPU is not needed to build).
set(VERDICT_HAVE_CUDA OFF)
if(NOT VERDICT_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND DEFINED ENV{CUDA_HOME} AND EXISTS "$ENV{CUDA_HOME}/bin/nvcc")
    set(CMAKE_CUDA_COMPILER "$ENV{CUDA_HOME}/bin/nvcc")
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)  # H100/H200; "native" fails without a GPU
    endif()
    # CMake 3.25 cannot pass -std=c++20 to nvcc; CUDA sources are C++17 (they include only headers
    # that are C++17-clean: the shared op math and Abseil).
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(VERDICT_HAVE_CUDA ON)
  elseif(VERDICT_CUDA STREQUAL "ON")
    message(FATAL_ERROR "VERDICT_CUDA=ON but no CUDA compiler was found (set CUDA_HOME)")
  endif()
endif()
message(STATUS "Verdict CUDA backend: ${VERDICT_HAVE_CUDA} (VERDICT_CUDA=${VERDICT_CUDA})")
