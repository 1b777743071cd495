# shellcheck shell=bash
# The assertion counter the shell test harnesses share (sourced):
#   ok DESCRIPTION COMMAND...   runs one assertion and prints ok/FAILED with it;
#   assert_summary              prints "N passed, M failed" and returns 1 on a failure.
passed=0
failed=0
ok() { # ok DESCRIPTION COMMAND...: one assertion
    local desc=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        printf 'ok     %s\n' "$desc"
    else
        failed=$((failed + 1))
        printf 'FAILED %s\n' "$desc"
    fi
}
assert_summary() {
    echo "$passed passed, $failed failed"
    ((failed == 0))
}
