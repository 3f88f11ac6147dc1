#!/bin/sh
# The report's browser test opens report.html in Debian's chromium. This decides what happens
# when chromium is missing:
# - under CI (CI set and not "false"), it is required: installed as root, else exit 1;
# - on a workstation, nothing is installed behind the user's back: one line says the browser
#   test will be skipped and how to enable it, and make test goes on (exit 0);
# - with --install (make browser), it is installed as root, else exit 1 with the command.
# $CHROMIUM overrides the path (tests use it).
set -eu
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$chromium" ]; then
    exit 0
fi
ci="${CI:-}"
if [ "${1:-}" != "--install" ] && { [ -z "$ci" ] || [ "$ci" = "false" ]; }; then
    echo "browser test will be skipped: $chromium is missing (enable it: sudo make browser, or sudo apt-get install chromium)"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q chromium
    exit 0
fi
echo "ensure-chromium: $chromium is missing and this is not root; install it with: sudo apt-get install -y chromium" >&2
exit 1
