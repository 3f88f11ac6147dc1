#!/bin/sh
# Make sure Debian's chromium is installed: the report tests open report.html in it.
# Idempotent: exits 0 at once when /usr/bin/chromium exists; installs it when run as root;
# otherwise says how to install it and exits 1.
set -eu
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q chromium
    exit 0
fi
echo "ensure-chromium: /usr/bin/chromium is missing and this is not root; install it with: sudo apt-get install -y chromium" >&2
exit 1
