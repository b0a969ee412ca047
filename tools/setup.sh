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
set -e
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" != 0 ]; then echo "setup.sh: run as root (apt-get install)" >&2; exit 1; fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    gcc libc6-dev scons pkg-config liblua5.4-dev lua5.4 libpcre2-dev check libsubunit-dev \
    ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo clang libclang-rt-14-dev >/dev/null
echo "setup.sh: dependencies installed"
