#!/bin/sh
# The units run as the system user drepo; its home is the state folder.
set -e
if ! getent group drepo >/dev/null; then
  addgroup --system drepo >/dev/null
fi
if ! getent passwd drepo >/dev/null; then
  adduser --system --ingroup drepo --home /var/lib/drepo --no-create-home --shell /usr/sbin/nologin drepo >/dev/null
fi
