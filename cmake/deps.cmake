# SPDX-License-Identifier: Apache-2.0
# Every third-party dependency is found here (Debian 12 packages; scripts/setup.sh installs them).
find_package(Threads REQUIRED)
find_package(absl CONFIG REQUIRED)          # Status/StatusOr, strings, containers, flat_hash_map
find_package(GTest CONFIG REQUIRED)         # unit tests
find_package(nlohmann_json CONFIG REQUIRED) # safetensors headers, config.json, tokenizer.json
find_package(CLI11 CONFIG REQUIRED)         # the verdict command line
find_package(benchmark CONFIG QUIET)        # micro-benchmarks in bench/

# OpenBLAS: sgemm for large (prefill) matrix products. Debian's config file gives variables only.
find_package(OpenBLAS CONFIG REQUIRED)
add_library(verdict_openblas INTERFACE)
target_include_directories(verdict_openblas INTERFACE ${OpenBLAS_INCLUDE_DIRS})
target_link_libraries(verdict_openblas INTERFACE ${OpenBLAS_LIBRARIES})
add_library(verdict::openblas ALIAS verdict_openblas)

# The wire contract and the services: Protocol Buffers (no CMake config file in Debian: CMake's
# FindProtobuf module) and gRPC (config file).
find_package(Protobuf REQUIRED)             # proto/verdict/v1 messages
find_package(gRPC CONFIG REQUIRED)          # client API and internal services
# UCX (ucp): activations between target shards (pkg-config only in Debian).
find_package(PkgConfig REQUIRED)
pkg_check_modules(UCX REQUIRED IMPORTED_TARGET ucx)
find_package(OpenSSL REQUIRED)              # TLS material, API key hashes, the development CA
find_package(ZLIB REQUIRED)                 # CRC-32 of activation payloads
# Admin endpoints: cpp-httplib (pkg-config only) serves them, prometheus-cpp formats /metrics.
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
find_package(prometheus-cpp CONFIG REQUIRED)
