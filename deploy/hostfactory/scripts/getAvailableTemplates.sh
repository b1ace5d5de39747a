#!/bin/sh
# Host Factory provider script: getAvailableTemplates. Usage: getAvailableTemplates.sh -f <input.json>
exec "$(dirname "$0")/invoke.sh" getAvailableTemplates "$@"
