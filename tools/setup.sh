#!/bin/sh
# setup.sh - installs what tern needs on Debian 12 (run as root). Idempotent.
#   gcc, scons, pkg-config     the build
#   liblua5.4-dev              graphs and pipelines are Lua 5.4 scripts
#   libpcre2-dev               tokenizer pre-tokenizer regexes (UTF + UCP)
#   check, libsubunit-dev      unit test framework (Check)
#   lua5.4                     the stock interpreter, to test require "tern"
#   ocl-icd-opencl-dev, opencl-headers   the opencl backend (built only where these are)
#   pocl-opencl-icd, clinfo   a CPU OpenCL device, so scons test runs the opencl backend here and in CI
#   clang, libclang-rt-14-dev  libFuzzer target for the GGUF reader
#   libmicrohttpd-dev, libjansson-dev   tern serve (HTTP and JSON)
#   curl, haproxy, nodejs, npm, chromium   the serve tests: curl cases, the failover test behind
#                              haproxy, the official openai client, the chat page in headless Chromium
# and for the aarch64 cross build and its tests (`scons arch=aarch64 test`,
# on an x86-64 host; the arm64 packages come from Debian multiarch):
#   gcc-aarch64-linux-gnu      the cross compiler
#   qemu-user-static           runs the aarch64 test binaries (qemu-aarch64-static)
#   libc6:arm64, liblua5.4-dev:arm64, libpcre2-dev:arm64, check:arm64,
#   libsubunit-dev:arm64, libmicrohttpd-dev:arm64, libjansson-dev:arm64
#                              the target's libraries, headers and .pc files
set -e
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" != 0 ]; then echo "setup.sh: run as root (apt-get install)" >&2; exit 1; fi
cross=
if [ "$(dpkg --print-architecture)" = amd64 ]; then
    dpkg --add-architecture arm64 # no-op when it is there already
    cross="gcc-aarch64-linux-gnu qemu-user-static libc6:arm64 liblua5.4-dev:arm64 libpcre2-dev:arm64
           check:arm64 libsubunit-dev:arm64 libmicrohttpd-dev:arm64 libjansson-dev:arm64"
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    gcc libc6-dev scons pkg-config liblua5.4-dev lua5.4 libpcre2-dev check libsubunit-dev \
    ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo clang libclang-rt-14-dev \
    libmicrohttpd-dev libjansson-dev curl haproxy $cross >/dev/null
# node and chromium are optional (their tests skip with a line without them); an image that
# already has node (from NodeSource, say) keeps it
command -v node >/dev/null || apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null || true
command -v chromium >/dev/null || apt-get install -y -qq --no-install-recommends chromium >/dev/null || true
echo "setup.sh: dependencies installed"
