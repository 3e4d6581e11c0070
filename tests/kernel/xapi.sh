# The xapi conformance harness (issue 4), run on the installed plugins
# against a real SR on a loop device (sourced by suite.sh).

test_begin "xapi conformance"
plugin_root=$THINSR_SCRATCH/root/usr/libexec/xapi-storage-script
make -s install-plugins DESTDIR="$THINSR_SCRATCH/root" >/dev/null
new_loop XD 1024
export THINSR_TOOLS_DIR=$THINSR_SCRATCH/bin THINSR_LOG_DIR=$THINSR_SCRATCH/log
# Template URIs resolve through the installed scheme scripts here.
THINSR_SCHEME_DIR=$THINSR_SCRATCH/root/usr/libexec/xapi/storage \
    python3 tests/xapi/conformance.py "$plugin_root" "$XD" > "$THINSR_SCRATCH/xapi.out" 2>&1
harness_status=$?
cat "$THINSR_SCRATCH/xapi.out"
unset THINSR_TOOLS_DIR THINSR_LOG_DIR
PASSED=$((PASSED + $(grep -c '^ok ' "$THINSR_SCRATCH/xapi.out")))
FAILED=$((FAILED + $(grep -c '^FAIL ' "$THINSR_SCRATCH/xapi.out")))
if [ "$harness_status" != 0 ] && ! grep -q '^FAIL ' "$THINSR_SCRATCH/xapi.out"; then
    fail "the harness itself failed (status $harness_status)"
fi
check "the harness's closing line" grep -Eq '^xapi: [0-9]+ passed, 0 failed$' "$THINSR_SCRATCH/xapi.out"
