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
set -e
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" != 0 ]; then echo "setup.sh: run as root (apt-get install)" >&2; exit 1; fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    gcc libc6-dev scons pkg-config liblua5.4-dev lua5.4 libpcre2-dev check libsubunit-dev \
    ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo clang libclang-rt-14-dev \
    libmicrohttpd-dev libjansson-dev curl haproxy >/dev/null
# node and chromium are optional (their tests skip with a line without them); an image that
# already has node (from NodeSource, say) keeps it
command -v node >/dev/null || apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null || true
command -v chromium >/dev/null || apt-get install -y -qq --no-install-recommends chromium >/dev/null || true
echo "setup.sh: dependencies installed"
