#!/bin/sh
# Host Factory provider script: requestReturnMachines. Usage: requestReturnMachines.sh -f <input.json>
exec "$(dirname "$0")/invoke.sh" requestReturnMachines "$@"
