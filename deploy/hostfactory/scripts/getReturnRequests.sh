#!/bin/sh
# Host Factory provider script: getReturnRequests. Usage: getReturnRequests.sh -f <input.json>
exec "$(dirname "$0")/invoke.sh" getReturnRequests "$@"
