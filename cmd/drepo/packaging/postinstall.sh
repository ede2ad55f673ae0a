#!/bin/sh
# Nothing starts by itself: an admin edits /etc/drepo/drepo.yaml, then enables the units
# the machine's role needs (README "Packages and units").
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
