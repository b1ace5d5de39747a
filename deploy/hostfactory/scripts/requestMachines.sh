#!/bin/sh
# Host Factory provider script: requestMachines. Usage: requestMachines.sh -f <input.json>
exec "$(dirname "$0")/invoke.sh" requestMachines "$@"
