#!/bin/sh
# Compile llama-server from the placed llama.cpp source, in a model image's build stage:
# the one build of every backend's image (model-server/Containerfile's `build` stage, on
# the backend's toolchain stage); only the backend's CMake flags differ.
#
#   build-llama.sh BACKEND     (cpu, cuda or vulkan; run in /src, which holds llama.cpp/)
#
# The Containerfile's build arguments come in as environment variables:
#   CPU_VARIANTS        the x86 CPU variants: ggml's names, `all` or `native`
#                       (model-server/Containerfile says what each choice costs)
#   CMAKE_EXTRA_ARGS    more CMake flags, passed last (for example "-DGGML_AVX512=OFF")
#   GLUE_CFLAGS         the optimisation of the server's request handling (default -O1;
#                       empty: upstream's -O3 everywhere); see below
#   LLAMA_BUILD_NUMBER, LLAMA_BUILD_COMMIT   what `llama-server --version` reports (a
#                       source archive has no git metadata)
#   CUDA_ARCHITECTURES  (cuda only) the GPU generations to compile kernels for
#
# It leaves llama-server and the shared libraries next to it (ggml, the backends, the CPU
# variants: GGML_BACKEND_DL loads them from the executable's folder) in /out.
#
# Build caching: with a host ccache directory mounted at /ccache (`podman build -v
# HOST_DIR:/ccache ...`, which `invoke model.build` does), only the objects whose compile
# command changed are recompiled after a flag change. Podman 4.3's builder does not keep
# `RUN --mount=type=cache` contents between builds, so a bind mount is used instead.
set -eu

backend="$1"

# Two edits of ggml's CMake files, each checked: SANDBOX_CPU_VARIANTS (a CMake list)
# limits which x86 CPU variants GGML_CPU_ALL_VARIANTS builds, and GCC 12's false
# positives in its own AVX-512 headers ("'__Y' is used uninitialized", GCC bug 105593)
# are silenced for the CPU backend libraries only.
# shellcheck disable=SC2016 # ${GGML_CPU_NAME} is CMake's, not the shell's
sed -i 's/^function(ggml_add_cpu_backend_variant tag_name)$/&\n    if (DEFINED SANDBOX_CPU_VARIANTS AND NOT tag_name IN_LIST SANDBOX_CPU_VARIANTS)\n        return()\n    endif()/' \
    llama.cpp/ggml/src/CMakeLists.txt
# shellcheck disable=SC2016
sed -i 's/^    ggml_add_backend_library(${GGML_CPU_NAME})$/&\n    if (CMAKE_C_COMPILER_ID STREQUAL "GNU")\n        target_compile_options(${GGML_CPU_NAME} PRIVATE -Wno-uninitialized -Wno-maybe-uninitialized)\n    endif()/' \
    llama.cpp/ggml/src/ggml-cpu/CMakeLists.txt
grep -q 'IN_LIST SANDBOX_CPU_VARIANTS' llama.cpp/ggml/src/CMakeLists.txt
grep -q 'Wno-maybe-uninitialized' llama.cpp/ggml/src/ggml-cpu/CMakeLists.txt

# The server's request handling is compiled with GLUE_CFLAGS (default -O1): llama-common
# (arguments, chat templates, JSON), the HTTP server and mtmd (image and audio input,
# which this sandbox's text models never use). That is nearly half of the compile, and
# none of it is on the token path: ggml's kernels and libllama keep upstream's -O3.
# Measured in the README ("Cold build"); GLUE_CFLAGS="" builds everything as upstream does.
: "${GLUE_CFLAGS=-O1}"
case "${GLUE_CFLAGS}" in
    ""|-O0|-O1|-O2|-O3|-Os|-Og) ;;
    *) echo "GLUE_CFLAGS='${GLUE_CFLAGS}': expected one of -O0 -O1 -O2 -O3 -Os -Og, or empty" >&2; exit 64 ;;
esac
if [ -n "${GLUE_CFLAGS}" ]; then
    cat >> llama.cpp/CMakeLists.txt <<CMAKE
foreach(glue llama-common cpp-httplib server-context llama-server-impl llama-server mtmd)
    if (TARGET \${glue})
        target_compile_options(\${glue} PRIVATE ${GLUE_CFLAGS})
    endif()
endforeach()
CMAKE
    grep -q "PRIVATE ${GLUE_CFLAGS})" llama.cpp/CMakeLists.txt
fi

launcher=""
if [ -d /ccache ]; then
    export CCACHE_DIR=/ccache CCACHE_BASEDIR=/src CCACHE_COMPILERCHECK=content
    launcher="-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
    if [ "${backend}" = cuda ]; then
        launcher="${launcher} -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache"
    fi
fi

: "${CPU_VARIANTS=}"
case "${CPU_VARIANTS}" in
    native) cpu="-DGGML_NATIVE=ON" ;;
    all) cpu="-DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=ON" ;;
    *[!a-z0-9_,]*|"") echo "CPU_VARIANTS='${CPU_VARIANTS}': expected all, native or names" >&2; exit 64 ;;
    *) cpu="-DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=ON -DSANDBOX_CPU_VARIANTS=$(echo "${CPU_VARIANTS}" | tr , ';')" ;;
esac

# The CMake flags, in one order for every backend: the backend's own after the CPU's,
# CMAKE_EXTRA_ARGS last. ${cpu}, ${launcher} and ${CMAKE_EXTRA_ARGS} hold several flags.
# shellcheck disable=SC2086
set -- \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON \
    -DBUILD_SHARED_LIBS=ON \
    -DGGML_BACKEND_DL=ON \
    ${cpu}
case "${backend}" in
    cpu) ;;
    cuda) set -- "$@" \
        -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
        -DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined ;;
    vulkan) set -- "$@" -DGGML_VULKAN=ON ;;
    *) echo "build-llama: backend '${backend}': expected cpu, cuda or vulkan" >&2; exit 64 ;;
esac
# shellcheck disable=SC2086
set -- "$@" \
    -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_SUBPROCESS=OFF \
    -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_NUMBER="${LLAMA_BUILD_NUMBER-0}" \
    -DLLAMA_BUILD_COMMIT="${LLAMA_BUILD_COMMIT-unknown}" \
    ${launcher} ${CMAKE_EXTRA_ARGS-}

cmake -S llama.cpp -B build -G Ninja "$@"
cmake --build build --target llama-server -j"$(nproc)"
# Where the compile's time went (Ninja's log: each file's start and end), by CMake target:
# the figures the performance report reads to choose CPU variants by their cost.
if [ -f build/.ninja_log ]; then
    echo "compile seconds by target (summed over its files; $(nproc) jobs at a time):"
    awk -F '\t' '!/^#/ {
        name = "(link, generate)"
        if (match($4, /CMakeFiles\/[^\/]+\.dir\//)) name = substr($4, RSTART + 11, RLENGTH - 16)
        sum[name] += ($2 - $1) / 1000; if ($2 > end) end = $2
    } END {
        for (name in sum) printf "%9.1f  %s\n", sum[name], name
        printf "%9.1f  (wall clock, first file to last)\n", end / 1000
    }' build/.ninja_log | sort -rn
fi
if [ -d /ccache ]; then CCACHE_DIR=/ccache ccache --show-stats; fi

mkdir -p /out
cp build/bin/llama-server /out/
find build/bin -maxdepth 1 -name '*.so*' -exec cp -P {} /out/ \;
for name in $(echo "${CPU_VARIANTS}" | tr , ' '); do
    case "${name}" in all|native) ;; *) test -f "/out/libggml-cpu-${name}.so" \
        || { echo "CPU variant ${name}: no such ggml variant was built" >&2; exit 65; } ;; esac
done
# The CUDA build image has no GPU driver (libcuda) for llama-server to load here.
if [ "${backend}" != cuda ]; then
    /out/llama-server --version
fi
