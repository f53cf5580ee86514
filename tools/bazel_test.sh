#!/usr/bin/env bash
# Runs keras_ga's Bazel tests offline with Debian's bazel-bootstrap (4.2.3).
#
#   tools/bazel_test.sh                      # every //:*_test target
#   tools/bazel_test.sh //:episode_test ...  # the given targets
#
# Environment:
#   KERAS_GA_DATA   data root passed to the tests (default: ../shared/data
#                   relative to the repo, when it exists).
#   PYTHON          interpreter the tests run under; it must have keras_ga's
#                   dependencies (tensorflow, keras, absl-py, ...) installed.
#                   Default: python3 on PATH (resolved through pyenv shims).
#   BAZEL           bazel binary (default: bazel).
#   BAZEL_OUTPUT_USER_ROOT  Bazel's cache (default: /tmp/keras_ga_bazel_$UID).
#   BAZEL_TEST_EXTRA_ARGS   extra flags appended to `bazel test`
#                   (e.g. --nocache_test_results).
#   BAZEL_SHUTDOWN_AFTER=1  stop the Bazel server afterwards (CI); otherwise
#                   it stays up (warm) until idle for 10 minutes.
#
# Nothing is downloaded: the external repositories that Bazel 4.2.3's
# @bazel_tools refers to for a py_test (rules_cc, rules_java,
# remote_coverage_tools) are overridden with stubs from third_party/bazel_stubs,
# and the Python toolchain is a generated local repository that points at
# $PYTHON (instead of the autodetecting one, which runs whatever python3 the
# test's PATH finds first).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

bazel_bin="${BAZEL:-bazel}"
if ! command -v "$bazel_bin" >/dev/null 2>&1; then
  echo "bazel_test.sh: '$bazel_bin' not found; install it with" \
    "'apt-get install -y bazel-bootstrap'." >&2
  exit 2
fi

python_bin="${PYTHON:-python3}"
# The real executable (not a pyenv shim) so it works from inside Bazel.
python_exe="$("$python_bin" -c 'import sys; print(sys.executable)')"
if ! "$python_exe" -c '
import importlib.util, sys
sys.exit(any(importlib.util.find_spec(m) is None
             for m in ("tensorflow", "keras", "absl")))'; then
  echo "bazel_test.sh: warning: $python_exe lacks tensorflow/keras/absl;" \
    "install the package first: pip install -e '.[test]'" >&2
fi

if [[ -z "${KERAS_GA_DATA:-}" && -d "$repo_root/../shared/data" ]]; then
  KERAS_GA_DATA="$(realpath "$repo_root/../shared/data")"
fi

output_user_root="${BAZEL_OUTPUT_USER_ROOT:-/tmp/keras_ga_bazel_$(id -u)}"
mkdir -p "$output_user_root"

# A local repository holding a py_runtime for $python_exe, registered as the
# Python toolchain. Rewritten only when it changes, to keep Bazel's cache.
toolchain_dir="$output_user_root/keras_ga_python_toolchain"
mkdir -p "$toolchain_dir"
toolchain_build="$(cat <<BUILD_EOF
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

package(default_visibility = ["//visibility:public"])

py_runtime(
    name = "py3_runtime",
    interpreter_path = "$python_exe",
    python_version = "PY3",
)

py_runtime_pair(
    name = "py_runtime_pair",
    py3_runtime = ":py3_runtime",
)

toolchain(
    name = "toolchain",
    toolchain = ":py_runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
BUILD_EOF
)"
if [[ "$(cat "$toolchain_dir/BUILD" 2>/dev/null)" != "$toolchain_build" ]]; then
  printf '%s\n' "$toolchain_build" >"$toolchain_dir/BUILD"
fi
[[ -f "$toolchain_dir/WORKSPACE" ]] ||
  echo 'workspace(name = "keras_ga_python")' >"$toolchain_dir/WORKSPACE"

stubs="$repo_root/third_party/bazel_stubs"
startup_flags=(
  "--output_user_root=$output_user_root"
  # Let an idle server go away on its own (e.g. after a CI run).
  "--max_idle_secs=600"
)
test_flags=(
  "--override_repository=rules_cc=$stubs/rules_cc"
  "--override_repository=rules_java=$stubs/rules_java"
  "--override_repository=remote_coverage_tools=$stubs/remote_coverage_tools"
  "--override_repository=keras_ga_python=$toolchain_dir"
  "--extra_toolchains=@keras_ga_python//:toolchain"
  # Tests read real data from outside the tree; run them unsandboxed.
  "--spawn_strategy=standalone"
  "--test_output=errors"
  "--test_env=HOME"
  # No bazel-* convenience symlinks in the source tree.
  "--symlink_prefix=/"
  "--color=no"
  "--curses=no"
  "--show_progress_rate_limit=30"
)
if [[ -n "${KERAS_GA_DATA:-}" ]]; then
  test_flags+=("--test_env=KERAS_GA_DATA=$KERAS_GA_DATA")
fi
if [[ -n "${BAZEL_TEST_EXTRA_ARGS:-}" ]]; then
  read -r -a extra_args <<<"$BAZEL_TEST_EXTRA_ARGS"
  test_flags+=("${extra_args[@]}")
fi

if [[ $# -eq 0 ]]; then
  # Every py_test in the root package (one per tests/*_test.py).
  set -- "//:all"
fi

rc=0
"$bazel_bin" "${startup_flags[@]}" test "${test_flags[@]}" -- "$@" || rc=$?
if [[ "${BAZEL_SHUTDOWN_AFTER:-0}" == 1 ]]; then
  # Leave no Bazel server behind (CI).
  "$bazel_bin" "${startup_flags[@]}" shutdown || true
fi
exit "$rc"
