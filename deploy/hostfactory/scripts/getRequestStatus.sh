#!/bin/sh
# Host Factory provider script: getRequestStatus. Usage: getRequestStatus.sh -f <input.json>
exec "$(dirname "$0")/invoke.sh" getRequestStatus "$@"
